"""Test tiers (``-m unit`` is ``make test-fast``; ``make test`` runs them all):

- unit: no subprocess, no worker process (episodes run in this process with
  ``--backend inline``): core, policy, optimizers, dispatch, worker, config errors,
  state and checkpoints, the trainer and the CLI. Under a minute.
- integration: what needs processes: signals, killed and hung workers, a run killed and
  resumed, layout determinism on worker processes, MuJoCo rendering, the CLI in its own
  process.
- ray: every test that starts Ray: the Ray backend on a local 2-node cluster, the
  benchmarks' quick mode. One at a time.
- slow: learning to a threshold, the experiments' quick modes, the package and seams.

A test without one of the last three marks is a unit test.
"""

import os
import tempfile
from pathlib import Path

import pytest

# Tests run on CPU with a small, deterministic XLA setup.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One on-disk cache of compiled XLA programs for this machine's test runs, shared by the
# xdist workers and every subprocess the tests start (they inherit the environment):
# most tests compile the same few functions (tell, the unit sampler). Keyed by the program
# and the JAX version, so it cannot serve a stale one.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"esjax-xla-{os.getuid()}")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

TIERS = ("integration", "ray", "slow")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker(pytest.mark.unit)
