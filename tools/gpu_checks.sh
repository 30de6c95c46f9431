#!/usr/bin/env bash
# Every GPU check in one run, for a lent GPU machine (no pip, no network there).
#
# Prepare here (once), then carry the git-ignored folders with the checkout:
#   python tools/device_encoder.py .device/encoder           # float16 copy of MiniLM-L6 (45 MB)
#   python -m pip install --quiet --target .device/site pytest   # (hypothesis tests skip)
#   make data                                                # datasets/re-docred, datasets/docred-meta
# Run (repository root):  OUT=/out bash tools/gpu_checks.sh
#   carry: .device, datasets/re-docred, datasets/docred-meta
# Variables: DEVICE (cuda), QUICK=1 (small sizes, for a dry run on the CPU with DEVICE=cpu),
#   SKIP_CHECKS=1 (only the study below),
#   STUDY=experiments/studies/X.yaml (also run that study's runs that are not done, on $DEVICE,
#   STUDY_ARGS e.g. "--seeds 67 --parallel 6 --max-runs 6"; each run gets cpu_count/parallel
#   threads); its results folder and summary come back in $OUT/results/. STUDY_SECONDS stops
#   the study after that many seconds (the runs finished by then come back; set it so that the
#   call ends before the device's per-call limit).
# Every step writes its log into $OUT and its exit status into $OUT/summary.txt; a failing step
# does not stop the others.
set -u
OUT=${OUT:-gpu_results}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export PYTHONPATH="$PWD:$PWD/.device/site${PYTHONPATH:+:$PYTHONPATH}"
export PYG_DOCRE_EMBEDDED_ENCODER=${PYG_DOCRE_EMBEDDED_ENCODER:-$PWD/.device/encoder}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYG_DOCRE_TEST_DEVICE=$DEVICE

step() {  # step NAME COMMAND...: run, log, record the exit status
    local name=$1; shift
    local start=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1
    echo "$name rc=$? ($((SECONDS - start)) s)" | tee -a "$OUT/summary.txt"
}

if [ "${SKIP_CHECKS:-0}" != 1 ]; then
    step versions $PY -c "import torch, torch_geometric, transformers; print(torch.__version__, \
    torch_geometric.__version__, transformers.__version__, torch.cuda.is_available() and \
    torch.cuda.get_device_name(0))"
    step test_gpu $PY -m pytest -m cuda -q -p no:cacheprovider
    if [ "${QUICK:-0}" = 1 ]; then
        step throughput $PY benchmarks/throughput.py --device "$DEVICE" --quick --out "$OUT/throughput"
        step sparse_vs_dense $PY benchmarks/sparse_vs_dense.py --device "$DEVICE" --quick \
            --out "$OUT/sparse_vs_dense"
    else
        step throughput $PY benchmarks/throughput.py --device "$DEVICE" --docs 96 --passes 3 \
            --out "$OUT/throughput"
        step throughput_bf16 $PY benchmarks/throughput.py --device "$DEVICE" --docs 96 --passes 3 \
            --precision bf16 --out "$OUT/throughput_bf16"
        step sparse_vs_dense $PY benchmarks/sparse_vs_dense.py --device "$DEVICE" --ks 16,64,256 \
            --hidden 768 --out "$OUT/sparse_vs_dense"
    fi
fi
if [ -n "${STUDY:-}" ]; then
    # shellcheck disable=SC2086  # STUDY_ARGS is a list of arguments
    if [ -n "${STUDY_SECONDS:-}" ]; then
        step study timeout "$STUDY_SECONDS" $PY experiments/study.py "$STUDY" --device "$DEVICE" \
            ${STUDY_ARGS:-}
        # (timeout signals its whole process group: the training subprocesses stop too)
        $PY experiments/study.py "$STUDY" --summary-only > "$OUT/study_summary.log" 2>&1
    else
        step study $PY experiments/study.py "$STUDY" --device "$DEVICE" ${STUDY_ARGS:-}
    fi
    mkdir -p "$OUT/results" && cp -r experiments/results/. "$OUT/results/"
fi
