# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
# The torch requirement installed first; override for a CUDA build, e.g. make install TORCH="torch==2.5.1"
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_DATA ?= ../shared/datasets
PREPARE_FROM := $(if $(wildcard $(SHARED_DATA)),--from $(SHARED_DATA),)
# A packaged config name (pyg_docre/configs/, see `pyg-docre train --list-configs`) or a path.
DEMO_CONFIG ?= redocred_minilm_cpu.yaml
PYTEST_ARGS ?=

.PHONY: install data test test-slow test-gpu test-device-image demo clean-cache

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,demo,bench]"
	touch $@

data: datasets/re-docred/.prepared datasets/docred-meta/.prepared

datasets/%/.prepared: datasets/prepare.py | $(VENV)/.installed
	$(BIN)/python datasets/prepare.py $* $(PREPARE_FROM)

test: install data
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install data
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The CUDA paths (tests/cuda and every test marked cuda); each is skipped without a GPU.
test-gpu: install data
	$(BIN)/python -m pytest -m cuda $(PYTEST_ARGS)

# The suite on this CPU under the GPU image's versions (torch 2.11, PyG 2.8.0, transformers 5.17),
# before device time is spent (tools/device_image_tests.sh; its own venv, about 5 GB).
test-device-image: install data
	HOST_PYTHON=$(BIN)/python bash tools/device_image_tests.sh $(PYTEST_ARGS)

# --resume: a second `make demo` continues an interrupted run, or reports the finished one.
demo: install data
	$(BIN)/python experiments/run.py --config $(DEMO_CONFIG) --resume

clean-cache:
	rm -rf .cache
