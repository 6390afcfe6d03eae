# esjax: `make train` and `make test` each work from a fresh clone with only Python >= 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

PRESET    ?= AntBulletEnv-v0
TIMESTEPS ?= 10000000
ARGS      ?=

.PHONY: setup lock train test test-fast docs bench gpu-wheels reproduce lint format clean

EXTRAS := .[dev,mujoco,ray,export,tracking,docs,jax-envs]

# constraints.txt pins every installed version (results depend on jax, numpy, mujoco,
# pybullet...: docs/reproducibility.md); `make lock` moves the pins to the newest releases.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "esjax needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '$(EXTRAS)'
	@touch $(STAMP)

setup: $(STAMP)

# Newest releases allowed by pyproject.toml into constraints.txt (then re-record the golden
# runs: python -m tests.golden.record, and rerun make test).
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '$(EXTRAS)'
	{ head -2 constraints.txt; $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | grep -v '^esjax'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)

# The main job: AntBulletEnv-v0 with its preset to 1e7 training timesteps, where its seed 0
# walks (experiments/results/pybullet/AntBulletEnv-v0/obsfloor): 1-2 hours on 2 cores
# (override PRESET, TIMESTEPS, ARGS).
train: setup
	$(PY) -m esjax.train --preset $(PRESET) --max-timesteps $(TIMESTEPS) $(ARGS)

# The whole suite, every tier (tests/conftest.py; times in docs/development.md): the unit tier on
# 2 processes; then ray (every test that starts Ray, the quick benchmark included: one test
# at a time, never two Ray instances at once) beside integration (one test at a time: its
# tests wait on processes and signals more than they compute), the docs build and slow on
# 2 processes; ray's output is printed last (ray takes longest).
RAY_LOG := $(VENV)/ray-tier.log
test: setup
	$(PY) -m pytest -q -m unit -n 2
	@$(PY) -m pytest -q -m ray -p no:cacheprovider > $(RAY_LOG) 2>&1 & ray=$$!; \
	$(PY) -m pytest -q -m integration; integration=$$?; \
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet; docs=$$?; \
	$(PY) -m pytest -q -m slow -n 2; slow=$$?; \
	wait $$ray; ray=$$?; echo "--- ray tier ---"; cat $(RAY_LOG); \
	exit $$(( integration || docs || slow || ray ))

# The docs site (docs/, mkdocs.yml) into site/, warnings as errors (make test builds it too).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The unit tier: no subprocess, no worker process (under a minute).
test-fast: setup
	$(PY) -m pytest -q -m unit -n 2

# Benchmarks -> benchmarks/results/*.json and BENCHMARKS.md (BENCH_QUICK=1: smoke test, < 1 min,
# written to benchmarks/quick/ instead).
bench: setup
	$(PY) benchmarks/run.py

# Wheels a GPU machine lacks (Python 3.12, CUDA jax preinstalled, no internet) for
# benchmarks/jax_gpu.sh, into benchmarks/gpu-wheels (git-ignored; jax itself left out).
GPU_WHEELS := benchmarks/gpu-wheels
gpu-wheels: setup
	$(PY) -m pip download --quiet --only-binary=:all: --python-version 3.12 \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d $(GPU_WHEELS) \
		brax mujoco-mjx gymnasium optax orbax-checkpoint tqdm
	cd $(GPU_WHEELS) && rm -f jax-*.whl jaxlib-*.whl jax_*.whl numpy-*.whl scipy-*.whl ml_dtypes-*.whl opt_einsum-*.whl
	du -sh $(GPU_WHEELS)

# The ES paper's Table 3 on MuJoCo v5 -> experiments/results/table3.md (hours on 2 cores).
reproduce: setup
	$(PY) -m experiments.paper_table3 --envs InvertedPendulum-v5 InvertedDoublePendulum-v5 \
		HalfCheetah-v5 Swimmer-v5 --seeds 0 1 2
	$(PY) -m experiments.paper_table3 --envs Hopper-v5 Walker2d-v5 --seeds 0 1 --max-steps 8e6

lint: setup
	$(VENV)/bin/ruff check esjax tests experiments
	$(VENV)/bin/ruff format --check esjax tests experiments
	$(VENV)/bin/mypy  # the seams: [tool.mypy] files in pyproject.toml

format: setup
	$(VENV)/bin/ruff format esjax tests experiments
	$(VENV)/bin/ruff check --fix esjax tests experiments

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
