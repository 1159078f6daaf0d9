# Two entry points for a fresh clone:  `make demo`  and  `make test`.
# PYTHON picks the interpreter the virtual environment is made from. TORCH is what gets
# installed when the environment has no torch yet; a user who brings a CUDA torch runs
# `make demo VENV_FLAGS=--system-site-packages` (or `pip install -e .` into their own env).
PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
RUN ?= runs/demo

.PHONY: setup setup-test demo test gpu-check lint bench clean

$(VENV)/.core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) "$(TORCH)"
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PIP) -e ".[test]"
	touch $@

setup: $(VENV)/.core
setup-test: $(VENV)/.test

# The main job: train the demo SLNN on the embedded Boston data, expand it into one
# polynomial, verify the polynomial against the network, print the Theorem 2 table.
demo: $(VENV)/.core
	$(VENV)/bin/polynet train --dataset boston --hidden 16 8 --degrees 4 2 --epochs 300 --lr 3e-3 --schedule cosine --threads 1 --out $(RUN)
	$(VENV)/bin/polynet expand $(RUN)/model.safetensors --out $(RUN)/polynomial --top 8
	$(VENV)/bin/polynet verify $(RUN)/model.safetensors --poly $(RUN)/polynomial

test: $(VENV)/.test
	$(PY) -m pytest -q

# CUDA check: gpu-marked tests, a Boston SLNN trained and expanded on CUDA, the CUDA checkpoint
# expanded on CPU, GPU-vs-CPU timings (a markdown table, also in runs/gpu_check.md). Without
# CUDA it says so and exits 0; CI never depends on it.
gpu-check: $(VENV)/.test
	$(PY) scripts/gpu_check.py $(GPU_CHECK_FLAGS)

lint: $(VENV)/.test
	$(VENV)/bin/ruff check polynet tests benchmarks examples proofs scripts
	$(VENV)/bin/ruff format --check polynet tests benchmarks examples proofs scripts

bench: $(VENV)/.test
	$(PIP) -e ".[bench]"
	$(PY) benchmarks/bench_slaf.py
	$(PY) benchmarks/bench_expand.py

clean:
	rm -rf $(VENV) runs build *.egg-info
