# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
# torch==2.13.0 is installed first and on its own: an unpinned torch would pull GBs of CUDA wheels.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spacelm-installed
TORCH_VERSION := 2.13.0

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[dev,model,arrange]"
	$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('$(TORCH_VERSION)') else f'pip replaced torch==$(TORCH_VERSION) by {v}')"
	touch $(STAMP)

demo: install
	$(VENV)/bin/spacelm eval --gt examples/layouts/gt --pred examples/layouts/pred --output out/eval_demo.json

test: install
	$(PY) -m pytest -q src tests

bench: install
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_points.py
	$(PY) bench/bench_encoder.py
	$(PY) bench/bench_rewards.py
	$(PY) bench/bench_judge_render.py

clean:
	rm -rf $(VENV) out .pytest_cache
