"""The benchmark scripts (benchmarks/): long documents, memory planning, child points, outputs."""
import json
import os
import sys
import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _common  # noqa: E402
import sparse_vs_dense as svd  # noqa: E402
import throughput  # noqa: E402


@pytest.fixture(scope="module")
def pool(dev_docs, tokenizer, rel2id):
    return svd.DocumentPool(dev_docs[:3], tokenizer, rel2id)


@pytest.fixture(scope="module")
def k1_graph_file(pool, tmp_path_factory):
    structure, counts = svd.view_and_counts(pool.long_document(1), 1)
    path = tmp_path_factory.mktemp("graphs") / "k1.pt"
    torch.save({"structure": structure, "counts": counts}, path)
    return path, counts


# ----------------------------------------------------------------------------------------------
# Long documents
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 5])  # 5 > pool size: parts cycle through the pool
def test_concatenation_counts_are_sums_over_parts(pool, k):
    from pyg_docre.data import tokenize_document
    parts = pool.documents(k)
    mentions = sum(len(e) for d in parts for e in d["vertexSet"])
    entities = sum(len(d["vertexSet"]) for d in parts)
    text_tokens = [len(tokenize_document(d, pool.tokenizer)) - 2 for d in parts]  # [CLS], [SEP]

    graph = pool.long_document(k)
    _, counts = svd.view_and_counts(graph, k)
    assert graph["document"].num_nodes == 1
    assert counts["num_mentions"] == mentions and counts["num_entities"] == entities
    assert counts["num_nodes"] == 1 + mentions + entities
    assert counts["num_tokens"] == sum(text_tokens) + 2
    assert counts["num_sentences"] == sum(len(d["sents"]) for d in parts)
    ids = graph["token"].input_ids
    assert ids[0] == pool.tokenizer.cls_token_id and ids[-1] == pool.tokenizer.sep_token_id
    assert int((ids == pool.tokenizer.cls_token_id).sum()) == 1


def test_joined_graph_is_build_hdg_of_the_concatenated_document(pool, rel2id):
    """The benchmark's long HDG equals build_hdg on the concatenated DocRED document."""
    from pyg_docre.data import build_hdg, to_gtn_inputs
    docs = pool.documents(3)
    reference = build_hdg(svd.concatenate_documents(docs), pool.tokenizer, rel2id)
    joined = pool.long_document(3)
    for store, key in [("token", "input_ids"), ("token", "sent"), ("mention", "entity"),
                       ("mention", "sent"), ("mention", "token_index")]:
        assert torch.equal(joined[store][key], reference[store][key]), (store, key)
    expected, got = to_gtn_inputs(reference), to_gtn_inputs(joined)
    for name, value in vars(expected).items():
        assert torch.equal(getattr(got, name), value), name


def test_concatenated_document_shifts_sentences_entities_and_labels(dev_docs):
    a, b = dev_docs[0], dev_docs[1]
    doc = svd.concatenate_documents([a, b])
    assert len(doc["sents"]) == len(a["sents"]) + len(b["sents"])
    assert len(doc["vertexSet"]) == len(a["vertexSet"]) + len(b["vertexSet"])
    first_b = doc["vertexSet"][len(a["vertexSet"])][0]
    assert first_b["sent_id"] == b["vertexSet"][0][0]["sent_id"] + len(a["sents"])
    label = doc["labels"][len(a["labels"])]
    assert label["h"] == b["labels"][0]["h"] + len(a["vertexSet"])


# ----------------------------------------------------------------------------------------------
# Memory planning
# ----------------------------------------------------------------------------------------------
K64 = {"k": 64, "num_nodes": 3083, "num_edges": 23800, "num_token_edges": 162891,
       "num_tokens": 19201}


def test_dense_point_that_cannot_fit_is_skipped_with_its_reason(monkeypatch):
    monkeypatch.setattr(_common, "meminfo_total_bytes", lambda: 2 * 1024 ** 3)  # a 2 GB machine
    run, reason, _, _ = svd.plan_point("dense", K64, 384, 0.7, 60_000)
    assert not run and "skipped" in reason and "RAM" in reason
    run, reason, backward, _ = svd.plan_point("sparse", K64, 384, 0.9, 60_000)
    assert run and reason is None and backward
    # Against a GPU's memory (--device cuda), the reason says so.
    run, reason, _, _ = svd.plan_point("dense", K64, 384, 0.7, 60_000, total_bytes=1024 ** 3)
    assert not run and "of the device's memory (0.7 GB)" in reason

    def no_child(*args, **kwargs):
        raise AssertionError("a skipped point must not start a child")

    monkeypatch.setattr(svd, "run_child", no_child)
    args = svd.parse_args(["--ks", "64"])
    row = svd.measure_point(args, "dense", 384, K64, Path("unused.pt"))
    assert row["status"] == "skipped" and "estimated forward peak" in row["reason"]
    assert row["num_nodes"] == K64["num_nodes"]


def test_dense_estimate_grows_quadratically_and_bounds_sparse():
    small = dict(K64)
    big = {key: (2 * v if key != "k" else v) for key, v in K64.items()}
    dense_small = svd.estimate_bytes("dense", small, 384, "forward")
    dense_big = svd.estimate_bytes("dense", big, 384, "forward")
    assert dense_big > 3.5 * dense_small
    assert svd.estimate_bytes("sparse", small, 384, "forward") < dense_small
    assert svd.estimate_bytes("sparse", small, 384, "train") > \
        svd.estimate_bytes("sparse", small, 384, "forward")


def test_backward_limited_by_node_count():
    run, _, backward, note = svd.plan_point("sparse", K64, 64, 0.9, train_max_nodes=1000)
    assert run and not backward and "--train-max-nodes" in note


# ----------------------------------------------------------------------------------------------
# Child points
# ----------------------------------------------------------------------------------------------
def test_point_child_returns_a_row_and_modes_agree(k1_graph_file):
    path, counts = k1_graph_file
    spec = {"graph": str(path), "k": 1, "mode": "dense", "hidden": 384, "repeats": 1,
            "warmup": 1, "budget": 5, "backward": True, "compare": True}
    row = svd.run_child(spec, timeout=300)
    assert row["status"] == "ok", row
    for key in ("num_nodes", "num_edges", "num_token_edges", "num_tokens"):
        assert row[key] == counts[key]
    assert row["forward_s"] > 0 and row["train_s"] > 0
    assert row["peak_forward_mb"] >= row["rss_baseline_mb"] > 0
    assert row["delta_train_mb"] >= 0 and row["ru_maxrss_mb"] > 0
    assert row["peak_reset"] is True
    assert row["max_abs_diff"] < 1e-4


def test_failed_child_is_recorded_not_raised(tmp_path):
    spec = {"graph": str(tmp_path / "missing.pt"), "k": 1, "mode": "sparse", "hidden": 32}
    row = svd.run_child(spec, timeout=300)
    assert row["status"] == "failed" and row["exit_status"] == 1
    assert "missing.pt" in row["stderr_tail"]


def test_child_over_its_memory_cap_fails_cleanly(k1_graph_file):
    """RLIMIT_DATA below what the child already holds: the next allocation fails."""
    path, _ = k1_graph_file
    spec = {"graph": str(path), "k": 1, "mode": "dense", "hidden": 384, "repeats": 1,
            "mem_limit_bytes": 64 * 1024 * 1024}
    row = svd.run_child(spec, timeout=300)
    assert row["status"] == "failed" and row["exit_status"] == 1
    assert "out of memory" in row["reason"]


def test_bad_point_spec_is_a_clear_error(capsys):
    assert svd.main(["--point", '{"mode": "sparse"}']) == 2
    assert "needs 'mode'" in capsys.readouterr().err


def test_no_scatter_variant_disables_torch_scatter(k1_graph_file, monkeypatch):
    import torch_geometric.typing as pyg_typing
    path, _ = k1_graph_file
    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SCATTER", pyg_typing.WITH_TORCH_SCATTER)
    row = svd.run_point({"graph": str(path), "k": 1, "mode": "sparse-no-scatter", "hidden": 32,
                         "repeats": 1, "warmup": 0, "backward": False})
    assert row["torch_scatter"] is False and pyg_typing.WITH_TORCH_SCATTER is False
    assert "forward+backward" in row["train_note"] or "not requested" in row["train_note"]


def test_available_modes():
    import torch_geometric.typing as pyg_typing
    modes = svd.available_modes()
    assert modes[0] == "sparse" and modes[-1] == "dense"
    assert ("sparse-no-scatter" in modes) == pyg_typing.WITH_TORCH_SCATTER
    with pytest.raises(ValueError, match="unknown mode"):
        svd.available_modes(["sparce"])


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------
def test_tiny_sweep_writes_json_markdown_and_plots(tmp_path):
    assert svd.main(["--ks", "1", "--hidden", "32", "--repeats", "1", "--warmup", "0",
                     "--budget", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "sparse_vs_dense.json").read_text())
    assert result["complete"] is True
    assert [r["mode"] for r in result["rows"]] == svd.available_modes()
    assert all(r["status"] == "ok" for r in result["rows"])
    meta = result["metadata"]
    for key in ("command", "date", "torch", "torch_geometric", "cpu_model", "cpu_count",
                "torch_threads"):
        assert meta[key] is not None, key
    report = (tmp_path / "sparse_vs_dense.md").read_text()
    assert "## Sparse against dense" in report and "| 1 |" in report
    for name in ("sparse_vs_dense_time.png", "sparse_vs_dense_memory.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _point_children(parent: int) -> list[int]:
    """The ``--point`` child processes of ``parent`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"--point" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_terminated_sweep_kills_its_running_child(tmp_path):
    """``kill PID`` (SIGTERM) stops the sweep as Ctrl-C does: the running point's child is
    killed with it, and the exit status names the signal. (Its first point is still running,
    so there is nothing to report yet.)"""
    import signal
    import subprocess

    # a point that times its forward pass for up to 120 s: still running when the signal comes
    proc = subprocess.Popen([sys.executable, str(BENCHMARKS / "sparse_vs_dense.py"), "--ks", "1",
                             "--hidden", "32", "--modes", "sparse", "--repeats", "1000000",
                             "--warmup", "0", "--budget", "120", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        children = []
        while not children and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            children = _point_children(proc.pid)
        assert children, proc.stdout.read().decode() if proc.poll() is not None else "no child"
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, output
    deadline = time.monotonic() + 10
    while Path(f"/proc/{children[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)                      # killed: gone once its parent reaped it
    orphan = Path(f"/proc/{children[0]}").exists()
    if orphan:
        os.kill(children[0], signal.SIGKILL)
    assert not orphan, "the point's child outlived the sweep"
    assert not (tmp_path / "sparse_vs_dense.json").exists()    # nothing measured: no report


def test_stop_signals_ignored_on_entry_stay_ignored():
    import signal

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)     # as under nohup
    try:
        with _common.exit_on_stop_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is _common._exit_on_signal
        assert signal.getsignal(signal.SIGTERM) is not _common._exit_on_signal
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_time_repeats_counts_a_warmup_over_budget():
    timing = _common.time_repeats(lambda: time.sleep(0.02), repeats=5, warmup=1, budget_s=0.01)
    assert timing["warmup_counted"] and len(timing["times"]) == 1
    timing = _common.time_repeats(lambda: None, repeats=3, warmup=1)
    assert not timing["warmup_counted"] and len(timing["times"]) == 3


# ----------------------------------------------------------------------------------------------
# Throughput
# ----------------------------------------------------------------------------------------------
def test_region_breakdown_attributes_backward_to_forward_regions():
    from torch.profiler import ProfilerActivity, profile
    from torch.autograd.profiler import record_function

    encoder, gtn = torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)
    x = torch.randn(256, 64)
    with throughput.RegionLabels() as labels:
        labels.module(encoder, "encoder")
        labels.module(gtn, "gtn")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with record_function(throughput.STEP):
                torch.cat([torch.arange(3), torch.arange(2)])  # no autograd node
                gtn(encoder(x).relu()).square().mean().backward()
    assert not encoder._forward_pre_hooks and not gtn._forward_hooks  # removed on exit
    breakdown = throughput.region_breakdown(prof.events())
    exclusive = breakdown["exclusive_us"]
    assert exclusive["encoder:backward"] > 0 and exclusive["gtn:backward"] > 0
    assert exclusive["encoder"] > 0 and exclusive["gtn"] > 0
    # Operators: counted once each however deep their own ATen calls go.
    assert breakdown["operators"] == throughput.operator_count(prof.events())
    by_region = breakdown["operators_by_region"]
    assert sum(by_region.values()) == breakdown["operators"]
    assert by_region["encoder"] >= 1 and by_region["gtn"] >= 1         # the two addmm's
    assert by_region["encoder:backward"] >= 1 and by_region["gtn:backward"] >= 1
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.nn.functional.linear(x, encoder.weight)      # aten::linear -> aten::addmm, ...
        x.relu()
    assert throughput.operator_count(prof.events()) == 2


def test_throughput_pass_statistics_use_the_median_pass():
    # One pass disturbed by the machine (9 s) moves the mean, not the median.
    stats = throughput.pass_statistics([3.0, 9.0, 2.0], num_docs=6)
    assert stats["median_pass_seconds"] == 3.0
    assert stats["s_per_doc"] == pytest.approx(0.5)
    assert stats["docs_per_s"] == pytest.approx(2.0)
    assert stats["pass_spread"] == pytest.approx(4.5)
    assert stats["documents"] == 18 and stats["pass_seconds"] == [3.0, 9.0, 2.0]


def test_throughput_ratios_and_report_fields():
    timing = {name: {kind: {"pass_seconds": [s], "documents": 4, "docs_per_s": 4 / s,
                            "s_per_doc": s / 4} for kind, s in (("train", t), ("inference", i))}
              for name, t, i in (("full", 12.0, 4.2), ("baseline", 10.0, 4.0),
                                 ("encoder", 8.0, 3.0))}
    result = throughput.ratios(timing)
    assert result["train: full / baseline"] == {"kind": "train", "ratio": pytest.approx(1.2),
                                                "target_max": 1.25, "met": True}
    assert result["inference: full / baseline"]["ratio"] == pytest.approx(1.05)
    assert result["train: full / encoder"]["ratio"] == pytest.approx(1.5)
    assert result["train: full / encoder"]["met"] is False
    assert result["inference: full / encoder"]["ratio"] == pytest.approx(1.4)
    breakdown = {"total_us": 100.0, "exclusive_us": {"encoder": 30.0, "encoder:backward": 20.0,
                                                    "data:collate": 5.0, "step": 45.0}}
    grouped = throughput.shares(breakdown)
    assert grouped["encoder"] == {"forward_pct": 30.0, "backward_pct": 20.0, "total_pct": 50.0}
    assert grouped["data pipeline"]["total_pct"] == 5.0
    assert sum(g["total_pct"] for g in grouped.values()) == pytest.approx(100.0)


def test_throughput_encoder_max_padding_argument():
    """Padded batches by default, as the training configs; auto or a share on request; the
    layer's own check rejects the rest with a usage error."""
    assert throughput.parse_args([]).encoder_max_padding is None
    assert throughput.parse_args(["--encoder-max-padding", "auto"]).encoder_max_padding == "auto"
    assert throughput.parse_args(["--encoder-max-padding", "0.25"]).encoder_max_padding == 0.25
    assert throughput.parse_args(["--encoder-max-padding", "None"]).encoder_max_padding is None
    for bad in ("1.5", "sometimes"):
        with pytest.raises(SystemExit):
            throughput.parse_args(["--encoder-max-padding", bad])


@pytest.mark.slow
def test_throughput_quick_mode_writes_ratios(tmp_path):
    assert throughput.main(["--quick", "--docs", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "throughput.json").read_text())
    assert len(result["ratios"]) == 4
    for name, ratio in result["ratios"].items():
        assert ratio["ratio"] > 0 and isinstance(ratio["met"], bool)
    for kind in ("train", "inference"):
        for name in throughput.VARIANTS:
            assert result["timing"][name][kind]["docs_per_s"] > 0
        for name in throughput.PROFILED:
            shares = result["profile"][name][kind]["shares"]
            assert {"encoder", "GTN", "losses", "data pipeline"} <= set(shares)
    assert result["profile"]["full"]["train"]["shares"]["GTN"]["total_pct"] > 0
    assert result["profile"]["baseline"]["train"]["shares"]["GTN"]["total_pct"] == 0
    assert result["settings"]["device"] == "cpu"
    assert "## Ratios of the time per document" in (tmp_path / "throughput.md").read_text()


@pytest.mark.slow
def test_throughput_with_the_compiled_gtn(tmp_path):
    """``--compile-gtn``: timings of the compiled full model, no profiled pass."""
    torch._dynamo.reset()
    assert throughput.main(["--quick", "--docs", "2", "--compile-gtn",
                            "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "throughput.json").read_text())
    assert result["settings"]["compile_gtn"] is True and result["profile"] == {}
    assert result["timing"]["full"]["train"]["docs_per_s"] > 0
    text = (tmp_path / "throughput.md").read_text()
    assert "GTN compiled" in text and "Where the time goes" not in text
    torch._dynamo.reset()


# ----------------------------------------------------------------------------------------------
# profile_layer.py
# ----------------------------------------------------------------------------------------------
def test_operator_families():
    import profile_layer
    assert profile_layer.family_of("aten::_scaled_dot_product_flash_attention_for_cpu") \
        == "fused attention (SDPA)"
    assert profile_layer.family_of("aten::index_select") == "gather / scatter / segment"
    assert profile_layer.family_of("aten::linear") == "linear layers"
    assert profile_layer.family_of("aten::addmm") == "linear layers"
    assert profile_layer.family_of("aten::bmm") == "matrix products"
    assert profile_layer.family_of("aten::masked_fill") == "softmax and masking"
    assert profile_layer.family_of("aten::t") == "memory (copy, cat, fill, views)"
    assert profile_layer.family_of("aten::native_layer_norm") == "normalisation and element-wise"
    assert profile_layer.family_of("MyCustomOp") == "other"


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_profile_point_shares_add_up(pool, mode):
    import profile_layer
    structure, counts = svd.view_and_counts(pool.long_document(2), 2)
    row = profile_layer.profile_point(mode, 32, structure, counts, seed=0)
    assert row["profiled_seconds"] > 0
    for key in ("regions_percent", "families_percent"):
        assert sum(row[key].values()) == pytest.approx(100.0, abs=1e-6)
    regions = row["regions_percent"]
    assert regions["graph attention"] > 0 and regions["cross attention"] > 0
    assert regions["backward"] > 0
    if mode == "sparse":
        assert row["families_percent"].get("fused attention (SDPA)", 0) > 0
    report = profile_layer.markdown_report({"command": "x"}, [row])
    assert "cross attention" in report


def test_benchmark_scripts_import_modules_not_scripts():
    import profile_layer
    source = Path(profile_layer.__file__).read_text()
    assert "import sparse_vs_dense" not in source
    assert _common.int_list("64, 256") == [64, 256]
    with pytest.raises(Exception, match="positive integers"):
        _common.int_list("0")


# ----------------------------------------------------------------------------------------------
# long_document_memory.py
# ----------------------------------------------------------------------------------------------
def test_long_document_keeps_entities_of_the_first_parts(tokenizer, rel2id):
    import long_document_memory as ldm

    docs = _common.load_documents("dev_revised.json", rel2id)
    doc = ldm.long_document(1500, 2, docs, tokenizer)
    assert len(doc["vertexSet"]) == len(docs[0]["vertexSet"]) + len(docs[1]["vertexSet"])
    first = len(docs[0]["sents"])
    assert doc["sents"][:first] == docs[0]["sents"]
    assert doc["vertexSet"][len(docs[0]["vertexSet"])][0]["sent_id"] >= first
    words = sum(len(s) for s in doc["sents"])
    assert words < 1500 < words * 2


def test_long_document_point_measures_predict():
    import long_document_memory as ldm

    row = ldm.run_point({"tokens": 800, "entity_docs": 1, "mode": "chunked"})
    assert row["num_tokens"] >= 800 and row["pairs"] > 0
    assert row["peak_mb"] >= row["baseline_mb"] > 0 and row["seconds"] > 0


# ----------------------------------------------------------------------------------------------
# host_syncs.py
# ----------------------------------------------------------------------------------------------
def test_host_syncs_recognises_the_calls_that_synchronise_on_a_gpu():
    import host_syncs

    x = torch.arange(6)
    counts = __import__("collections").Counter()
    with host_syncs._SyncProneCalls(counts):
        int(x[0]), x.nonzero(), x[x > 2], x.tolist()
        x.repeat_interleave(x)                       # the output size needs the repeats' sum
        x.repeat_interleave(x, output_size=15)       # given: no synchronisation
        x + 1, x[1:3], x.view(2, 3)                  # none of these
    calls = sorted(call for call, _ in counts.elements())
    assert calls == sorted(["__int__", "nonzero", "boolean mask", "tolist",
                            "repeat_interleave"])
    # Sites are lines of pyg_docre; a call from elsewhere is PyTorch's own.
    assert {site for _, site in counts} == {host_syncs.INTERNALS}


def test_host_syncs_lists_the_model_sites(tmp_path):
    import host_syncs

    assert host_syncs.main(["--steps", "1", "--batch-size", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "host_syncs.json").read_text())
    full, baseline = result["models"]["full"], result["models"]["baseline"]
    assert full["per_step"] >= baseline["per_step"] > 0
    # the model's one read of its batch and the trainer's one read of the losses ...
    functions = {s["site"].rsplit(" ", 1)[-1] for s in full["sites"]}
    assert {"read_host_values", "read_scalars"} <= functions
    # ... and none in the GTN, context pooling or the encoder's (host-side) plan
    files = {s["site"].split(":")[0] for s in full["sites"]}
    assert not files & {"pyg_docre/nn/conv/gtn_conv.py", "pyg_docre/nn/attention.py",
                        "pyg_docre/models/classifier.py", "pyg_docre/nn/window_plan.py"}
    assert "| full |" in (tmp_path / "host_syncs.md").read_text()
