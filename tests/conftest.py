"""Test tiers (``-m unit`` is ``make test-fast``; ``make test`` runs them all):

- unit: no subprocess, no worker process (episodes run in this process with
  ``--backend inline``): core, policy, optimizers, dispatch, worker, config errors,
  state and checkpoints, the trainer and the CLI. Under a minute.
- integration: what needs processes: signals, killed and hung workers, a run killed and
  resumed, layout determinism on worker processes, MuJoCo rendering, the CLI in its own
  process.
- ray: the Ray backend on a local 2-node cluster.
- slow: learning to a threshold, the experiments' quick modes, the benchmarks.

A test without one of the last three marks is a unit test.
"""

import os

import pytest

# Tests run on CPU with a small, deterministic XLA setup.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

TIERS = ("integration", "ray", "slow")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker(pytest.mark.unit)
