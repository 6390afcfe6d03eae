"""Golden runs: what esjax computes does not change when its code is restructured.

The logs and θ in tests/golden/ were recorded by ``python -m tests.golden.record`` (its
docstring says on which commit) on worker processes; every deterministic log column and
the final θ must be equal bit for bit, rerun here in this process (``--backend inline``)
in another layout. The Ray case is in tests/test_ray.py; worker processes in other
layouts: tests/test_determinism.py and tests/test_strategies.py.
"""

import numpy as np
import pytest

from tests.golden.record import columns, read_golden, run_case

LAYOUTS = {  # case -> a worker layout other than the recorded one
    "adam_default": dict(num_workers=2, envs_per_worker=1),
    "sgd_options": dict(num_workers=2, envs_per_worker=1),
    "pybullet_ars": dict(num_workers=1, envs_per_worker=3),
    "mujoco_pgpe_resume": dict(num_workers=3, envs_per_worker=1),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_a_run_matches_its_golden_record(name):
    rows, theta = run_case(name, backend="inline", **LAYOUTS[name])
    want_columns, want_theta = read_golden(name)
    np.testing.assert_array_equal(columns(rows), want_columns)
    np.testing.assert_array_equal(theta, want_theta)
