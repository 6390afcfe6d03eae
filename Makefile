# esjax: `make train` and `make test` each work from a fresh clone with only Python >= 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

ENV       ?= AntBulletEnv-v0
TIMESTEPS ?= 1500000
ARGS      ?=

.PHONY: setup train test test-fast bench lint format clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "esjax needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,mujoco]'
	@touch $(STAMP)

setup: $(STAMP)

# The main job on sensible defaults: about 8 minutes on 2 cores (override ENV, TIMESTEPS, ARGS).
train: setup
	$(PY) -m esjax.train --env $(ENV) --max-timesteps $(TIMESTEPS) $(ARGS)

# The whole suite, learning test included (a few minutes on 2 cores).
test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# Benchmarks -> benchmarks/results/*.json and BENCHMARKS.md (BENCH_QUICK=1: smoke test, < 1 min).
bench: setup
	$(PY) benchmarks/run.py

lint: setup
	$(VENV)/bin/ruff check esjax tests
	$(VENV)/bin/ruff format --check esjax tests

format: setup
	$(VENV)/bin/ruff format esjax tests
	$(VENV)/bin/ruff check --fix esjax tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
