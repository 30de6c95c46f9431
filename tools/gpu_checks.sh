#!/usr/bin/env bash
# Every GPU check in one run, for a lent GPU machine (no pip, no network there; its image has
# torch, PyG, transformers, pytest, hypothesis and matplotlib).
#
# Prepare here (once), then carry the git-ignored folders with the checkout:
#   python tools/device_encoder.py .device/encoder           # float16 copy of MiniLM-L6 (45 MB)
#   make data                                                # datasets/re-docred, datasets/docred-meta
#   make test-device-image     # the suite here under the image's versions (torch 2.11, PyG 2.8.0,
#                              # transformers 5.17); a dry run: OUT=/tmp/g DEVICE=cpu QUICK=1 ...
# Run (repository root):  OUT=/out bash tools/gpu_checks.sh
#   carry: .device/encoder, datasets/re-docred, datasets/docred-meta
#   (what travels, checkout included, must stay under 64 MiB: about 55 MiB today)
# Variables: DEVICE (cuda), QUICK=1 (small sizes, for a dry run on the CPU with DEVICE=cpu),
#   SKIP_CHECKS=1 (only the study below), STEPS="test_gpu throughput_bf16" (only the checks
#   named: versions nvidia_smi test_gpu throughput throughput_bf16 throughput_compiled host_syncs
#   sparse_vs_dense; all if unset),
#   COMMIT=<git rev-parse HEAD here> (written to summary.txt: the device copies the working tree
#   but its git metadata can be an older commit, so the runs and benchmarks there record that
#   commit with -dirty: the calls of 2026-11-27 recorded dd2e8f1 for 9c34572 and 7e5e849),
#   STUDY=experiments/studies/X.yaml (also run that study's runs that are not done, on $DEVICE,
#   STUDY_ARGS e.g. "--seeds 67 --parallel 6 --max-runs 6"; each run gets cpu_count/parallel
#   threads). STUDY_SECONDS stops the study after that many seconds (the runs finished by then
#   are kept; set it so that the call ends before the device's per-call limit). The study starts
#   first, beside the GPU tests; the benchmarks wait for it (their timings need an idle machine),
#   so a call takes about STUDY_SECONDS + 3-4 minutes of benchmarks.
# What comes back: the device returns at most 8 files from $OUT, none deeper than two folders, so
# everything (step logs, benchmark outputs, the study's results folder as results/) is packed
# into ONE archive, $OUT/gpu_checks.tar.gz, rewritten after every step (a call cut off at its
# limit still returns the steps done), beside $OUT/summary.txt (one line per step: exit status,
# seconds). Unpack here with:  tar -xzf gpu_checks.tar.gz -C gpu_results
# A failing step does not stop the others.
# Planning a lent machine's 15 minutes (starting it counts, 1-3 minutes; at most 600 s a call).
# Step times on an H200 (2026-11-27, benchmarks/results/cuda_h200/logs): versions 16-19 s,
# test_gpu 95-99 s, throughput 42 s, throughput_bf16 52 s, sparse_vs_dense 117 s; six 8-epoch
# study runs at once 336 s, so six 12-epoch runs about 500 s. Two calls fit:
#   1. STEPS="versions test_gpu throughput throughput_compiled host_syncs"  (timeout_s 420)
#   2. on the warm machine: SKIP_CHECKS=1 STUDY=... STUDY_ARGS="--parallel 6" with
#      STUDY_SECONDS = min(560, budget_left_s - 40), only if that is at least the 500 s that six
#      12-epoch runs need (a run still going when the study stops is lost); then give_back.
set -u
OUT=${OUT:-gpu_results}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAGE=$(mktemp -d)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYG_DOCRE_EMBEDDED_ENCODER=${PYG_DOCRE_EMBEDDED_ENCODER:-$PWD/.device/encoder}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYG_DOCRE_TEST_DEVICE=$DEVICE

LOCK=$(mktemp)   # outside $OUT (everything there comes back) and outside the archive
trap 'rm -rf "$STAGE" "$LOCK"' EXIT    # (the last pack has copied everything to $OUT)

pack() {  # the staging folder -> $OUT/gpu_checks.tar.gz and $OUT/summary.txt, atomically
    # The study packs from its own shell too: one pack at a time (flock, where the image has it),
    # or tar could see a log change under it and skip that update.
    (
        command -v flock > /dev/null && flock 9
        _pack
    ) 9> "$LOCK"
}

_pack() {
    local tmp
    tmp=$(mktemp "$OUT/.pack.XXXXXX")
    tar -czf "$tmp" -C "$STAGE" . 2>/dev/null && mv "$tmp" "$OUT/gpu_checks.tar.gz"
    rm -f "$tmp"
    [ -f "$STAGE/summary.txt" ] && cp "$STAGE/summary.txt" "$OUT/.summary.tmp" && \
        mv "$OUT/.summary.tmp" "$OUT/summary.txt"
    return 0
}

step() {  # step NAME COMMAND...: run, log, record the exit status, pack (if STEPS names it)
    local name=$1; shift
    if [ -n "${STEPS:-}" ] && [[ " $STEPS " != *" $name "* ]] && [ "$name" != study ]; then
        return 0
    fi
    local start=$SECONDS
    "$@" > "$STAGE/$name.log" 2>&1
    echo "$name rc=$? ($((SECONDS - start)) s)" | tee -a "$STAGE/summary.txt"
    pack
}

study() {  # the study's outstanding runs on $DEVICE, then its summary and results folder
    # shellcheck disable=SC2086  # STUDY_ARGS is a list of arguments
    if [ -n "${STUDY_SECONDS:-}" ]; then
        # (timeout SIGTERMs the runner, which stops its training processes and names them)
        step study timeout "$STUDY_SECONDS" $PY experiments/study.py "$STUDY" --device "$DEVICE" \
            ${STUDY_ARGS:-}
    else
        step study $PY experiments/study.py "$STUDY" --device "$DEVICE" ${STUDY_ARGS:-}
    fi
    $PY experiments/study.py "$STUDY" --summary-only > "$STAGE/study_summary.log" 2>&1
    mkdir -p "$STAGE/results" && cp -r experiments/results/. "$STAGE/results/"
    pack
}

echo "checkout ${COMMIT:-unknown} (as the sender's git said; git here: $(git rev-parse --short HEAD \
    2>/dev/null || echo none))" | tee -a "$STAGE/summary.txt"

# The study (if any) starts first and runs beside the correctness tests; the benchmarks come
# after it, so that their timings see an otherwise idle machine.
if [ -n "${STUDY:-}" ]; then
    study &
    STUDY_PID=$!
fi
if [ "${SKIP_CHECKS:-0}" != 1 ]; then
    step versions $PY -c "import torch, torch_geometric, transformers; print(torch.__version__, \
    torch_geometric.__version__, transformers.__version__, torch.cuda.is_available() and \
    torch.cuda.get_device_name(0))"
    command -v nvidia-smi > /dev/null && step nvidia_smi nvidia-smi
    step test_gpu $PY -m pytest -m cuda -q -p no:cacheprovider -rs
fi
if [ -n "${STUDY:-}" ]; then
    wait "$STUDY_PID"
fi
if [ "${SKIP_CHECKS:-0}" != 1 ]; then
    if [ "${QUICK:-0}" = 1 ]; then
        step throughput $PY benchmarks/throughput.py --device "$DEVICE" --quick \
            --out "$STAGE/throughput"
        step sparse_vs_dense $PY benchmarks/sparse_vs_dense.py --device "$DEVICE" --quick \
            --out "$STAGE/sparse_vs_dense"
        step host_syncs $PY benchmarks/host_syncs.py --device "$DEVICE" --steps 1 \
            --batch-size 2 --out "$STAGE/host_syncs"
    else
        step throughput $PY benchmarks/throughput.py --device "$DEVICE" --docs 96 --passes 3 \
            --out "$STAGE/throughput"
        step throughput_bf16 $PY benchmarks/throughput.py --device "$DEVICE" --docs 96 --passes 3 \
            --precision bf16 --out "$STAGE/throughput_bf16"
        step throughput_compiled $PY benchmarks/throughput.py --device "$DEVICE" --docs 96 \
            --passes 3 --compile-gtn --out "$STAGE/throughput_compiled"
        step host_syncs $PY benchmarks/host_syncs.py --device "$DEVICE" --out "$STAGE/host_syncs"
        # (dense at k=1024 is skipped by its memory estimate; sparse runs it)
        step sparse_vs_dense $PY benchmarks/sparse_vs_dense.py --device "$DEVICE" \
            --ks 16,64,256,1024 --hidden 768 --repeats 3 --budget 10 --timeout 120 \
            --out "$STAGE/sparse_vs_dense"
    fi
fi
