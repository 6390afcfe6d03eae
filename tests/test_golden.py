"""--algo openai-es (the default) computes what it did before ARS and PGPE existed.

The golden logs and θ in tests/golden/ were recorded on main at ad5c918 by
``python -m tests.golden.record``; every deterministic log column and the final θ must
be equal bit for bit, in another worker layout too.
"""

import csv

import numpy as np
import pytest

from tests.golden.record import CASES, COLUMNS, HERE, run_case


@pytest.mark.parametrize("name", list(CASES))
def test_openai_es_matches_the_golden_run(name):
    rows, theta = run_case(name, num_workers=2, envs_per_worker=1)
    with open(HERE / f"{name}.csv", newline="") as f:
        golden = list(csv.DictReader(f))
    got = np.array([[float(r[c]) for c in COLUMNS] for r in rows])
    want = np.array([[float(g[c]) for c in COLUMNS] for g in golden])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(theta, np.load(HERE / f"{name}_theta.npy"))
