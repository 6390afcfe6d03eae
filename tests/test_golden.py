"""Golden runs: what esjax computes does not change when its code is restructured.

The logs and θ in tests/golden/ were recorded by ``python -m tests.golden.record`` (its
docstring says on which commit) on worker processes; every deterministic log column and
the final θ must be equal bit for bit, rerun here in this process (``--backend inline``)
in another layout. The Ray case is in tests/rollout/test_ray.py; worker processes in other
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


# Other CPUs' code paths on this one: NumPy without its AVX2/AVX-512 kernels and OpenBLAS's
# oldest x86-64 kernels (what a pre-Haswell Intel or another vendor's CPU would pick at run
# time). XLA's own choice is pinned (esjax.cpu_bits; tests/test_cpu_bits.py).
OTHER_CPU = {
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Prescott",
}
CHECK_GOLDEN = """
import sys, numpy as np
from tests.golden.record import columns, read_golden, run_case
for name in sys.argv[1:]:
    rows, theta = run_case(name, backend="inline", num_workers=1, envs_per_worker=2)
    want_columns, want_theta = read_golden(name)
    np.testing.assert_array_equal(columns(rows), want_columns)
    np.testing.assert_array_equal(theta, want_theta)
"""


@pytest.mark.integration
def test_golden_records_hold_on_other_cpu_code_paths():
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-c", CHECK_GOLDEN, "pybullet_ars", "mujoco_pgpe_resume"]
    done = subprocess.run(cmd, env={**os.environ, **OTHER_CPU}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
