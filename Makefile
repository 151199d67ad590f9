# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
# torch==2.13.0 is installed first and on its own: an unpinned torch would pull GBs of CUDA wheels.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spacelm-installed
TORCH_VERSION := 2.13.0

.PHONY: install demo test bench clean blender

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[dev,model,train,lora,arrange,rl,viz]"
	$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('$(TORCH_VERSION)') else f'pip replaced torch==$(TORCH_VERSION) by {v}')"
	touch $(STAMP)

# The CPU quickstart: synthesise rooms, train a tiny SpatialLM through both stages, predict held-out
# rooms and score them (about 25 minutes on 2 cores; the synthesised rooms are reused on a rerun).
demo: install
	$(VENV)/bin/spacelm quickstart --output out/quickstart --overwrite

test: install
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest -q src tests

bench: install
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_points.py
	$(PY) bench/bench_encoder.py
	$(PY) bench/bench_rewards.py
	$(PY) bench/bench_judge_render.py

clean:
	rm -rf $(VENV) out .pytest_cache

# Blender render worker (spacelm.render.blender): bpy pins numpy<2, so it gets its own environment.
# bpy 5.0.1 is the newest bpy with a cp311 wheel (5.1+ ship cp313 only); it needs Python 3.11 exactly.
BLENDER_PYTHON ?= python3.11
BLENDER_VENV ?= .venv-blender
BLENDER_STAMP := $(BLENDER_VENV)/.spacelm-installed
BPY_VERSION := 5.0.1

blender: $(BLENDER_STAMP)

$(BLENDER_STAMP): Makefile
	test -x $(BLENDER_VENV)/bin/python || $(BLENDER_PYTHON) -m venv $(BLENDER_VENV)
	$(BLENDER_VENV)/bin/python -m pip install -q bpy==$(BPY_VERSION) "numpy<2"
	$(BLENDER_VENV)/bin/python -c "import bpy, numpy; print('bpy', bpy.app.version_string, 'numpy', numpy.__version__)"
	touch $(BLENDER_STAMP)
