"""The same seed and options give the same results whatever the worker layout.

Hopper's episodes vary in length, so the same episode runs in a different slot, after a
different predecessor in its env, in each layout: the cases where layouts used to differ
(an env's contact state left over from its previous episode).
"""

import numpy as np
import pytest

from esjax.config import Config
from esjax.trainer import Trainer

pytestmark = pytest.mark.integration

COLUMNS = ["GenRewMean", "GenRewStd", "GenLenMean", "GenRewMax", "EvalGenRewardMean",
           "EvalGenCount", "EpisodesThisGen", "TimestepsThisGen", "TimestepsSoFar", "ObCount",
           "GradNorm"]  # fmt: skip


def run(hidden, workers, envs, backend="local"):
    """Log columns (all generations) and the final θ of a short Hopper run."""
    cfg = Config(env="HopperBulletEnv-v0", seed=3, population_size=8, timesteps_per_gen=1500,
                 max_generations=3, noise_table_size=10_000_000, hidden_dims=hidden,
                 num_workers=workers, envs_per_worker=envs, eval_prob=0.05,
                 backend=backend)  # fmt: skip
    trainer = Trainer.from_config(cfg, log=lambda s: None)
    trainer.start()
    try:
        rows = [trainer.step() for _ in range(cfg.max_generations)]
    finally:
        trainer.close()
    return np.array([[r[c] for c in COLUMNS] for r in rows]), np.asarray(trainer.state.theta)


@pytest.mark.parametrize(
    "hidden, layouts",
    # (A 256x256 case passed before the contact fix too, so it tested nothing more; the
    # same property for every strategy: tests/test_strategies.py and tests/test_golden.py.)
    [((32, 32), [(2, 2), (3, 8)])],
    ids=["32x32"],
)
def test_results_are_bit_identical_for_every_worker_layout(hidden, layouts):
    ref_log, ref_theta = run(hidden, 1, 1, backend="inline")  # one env, in this process
    assert len(np.unique(ref_log[:, 2])) == 3  # mean episode lengths vary
    for workers, envs in layouts:
        log, theta = run(hidden, workers, envs)
        np.testing.assert_array_equal(log, ref_log, err_msg=f"{workers} workers x {envs} envs")
        np.testing.assert_array_equal(theta, ref_theta, err_msg=f"{workers} x {envs}")
