"""Record the OpenAI-ES golden runs: ``python -m tests.golden.record``.

The files next to this script were recorded on main at ad5c918, before ARS and PGPE
existed; ``tests/test_golden.py`` reruns the same configs and requires every
deterministic log column and the final θ to be equal bit for bit, so adding strategies
cannot change what ``--algo openai-es`` (the default) computes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# Every column that does not depend on timing or on the worker layout.
COLUMNS = [
    "Generation", "GenRewMean", "GenRewStd", "GenLenMean", "GenRewMax", "EvalGenRewardMean",
    "EvalGenCount", "EpisodesThisGen", "EpisodesSoFar", "TimestepsThisGen", "TimestepsSoFar",
    "ObCount", "GradNorm", "UpdateRatio", "EvalBestSoFar", "PeriodicEvalRewMean",
    "PeriodicEvalRewStd", "PeriodicEvalLenMean", "PeriodicEvalCount",
]  # fmt: skip

COMMON = dict(
    env="InvertedDoublePendulum-v5", seed=5, population_size=8, timesteps_per_gen=600,
    max_generations=4, noise_table_size=2_000_000, hidden_dims=(16, 16), num_workers=1,
    envs_per_worker=3, eval_every=2, eval_episodes=2,
)  # fmt: skip

# name -> options on top of COMMON: the defaults (Adam, centered ranks), and a run that
# exercises the other paths of the update (SGD with momentum, sign ranks, no mirroring,
# dividing by sigma, reward shift, discretized actions, --eval-prob).
CASES = {
    "adam_default": {},
    "sgd_options": dict(
        optimizer="sgd", return_proc_mode="centered_sign_rank", mirrored_sampling=False,
        divide_by_stdev=True, reward_shift=0.5, discretize_actions=True, ac_bins=4,
        eval_prob=0.1, learning_rate=0.02, l2coeff=0.01, nonlin="relu",
    ),
}  # fmt: skip


def run_case(name: str, **overrides) -> tuple[list[dict], np.ndarray]:
    """(log rows, final θ) of case ``name`` (``overrides``: e.g. a worker layout)."""
    from esjax.config import Config
    from esjax.trainer import Trainer

    cfg = Config(**{**COMMON, **CASES[name], **overrides})
    trainer = Trainer(cfg, log=lambda s: None)
    trainer.start()
    try:
        rows = [trainer.step() for _ in range(cfg.max_generations)]
    finally:
        trainer.close()
    return rows, np.asarray(trainer.state.theta)


def main() -> None:
    for name in CASES:
        rows, theta = run_case(name)
        with open(HERE / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow([repr(float(r[c])) for c in COLUMNS])
        np.save(HERE / f"{name}_theta.npy", theta)
        print(name, "recorded:", len(rows), "generations")


if __name__ == "__main__":
    main()
