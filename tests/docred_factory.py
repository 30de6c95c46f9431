"""Tiny hand-made DocRED documents for the scorer and CLI tests."""


def make_doc(title, entities, labels, n_sents=3):
    """A valid DocRED document. ``entities``: per entity a list of (name, sent_id);
    ``labels``: (h, t, r) triples."""
    sents = [[f"w{i}" for i in range(10)] for _ in range(n_sents)]
    next_pos = [0] * n_sents
    vertex_set = []
    for entity in entities:
        mentions = []
        for name, sent_id in entity:
            start = next_pos[sent_id]
            next_pos[sent_id] += 1
            mentions.append({"name": name, "sent_id": sent_id, "pos": [start, start + 1],
                             "type": "MISC"})
        vertex_set.append(mentions)
    return {"title": title, "sents": sents, "vertexSet": vertex_set,
            "labels": [{"h": h, "t": t, "r": r, "evidence": []} for h, t, r in labels]}
