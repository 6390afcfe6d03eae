"""Record golden runs: ``python -m tests.golden.record NAME ...``.

Each case's log columns and final θ are stored next to this script; the tests rerun the
same configs (in another worker layout) and require every deterministic log column and
the final θ to be equal bit for bit.

- ``adam_default``, ``sgd_options``: OpenAI-ES, recorded on main at ad5c918, before ARS
  and PGPE existed (``tests/test_golden.py``): adding strategies changed nothing.
- ``pybullet_ars``, ``mujoco_pgpe_resume``, ``ray_openai_es``: first recorded on main at
  b4616a9, before the restructuring of issue 17 (one transport, typed messages, an
  injectable pool): it changed nothing either. ``ray_openai_es`` is checked on the Ray
  backend (``tests/rollout/test_ray.py``).

All five were re-recorded when the bits were made independent of the CPU (issue 28: the
update's reductions in a fixed order, XLA capped at AVX, the workers' network without
BLAS); the UpdateRatio column once more when its division was kept off XLA's approximate
rsqrt (``esjax.core.reduce.ordered_norm``; θ and every other column unchanged).
"""

from __future__ import annotations

import csv
import sys
import tempfile
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
# dividing by sigma, reward shift, discretized actions, --eval-prob); then one run per
# backend family: pybullet on 2 workers (ARS, linear policy), MuJoCo resumed after 2
# generations (PGPE + ClipUp: σ and velocity in the checkpoint), Ray (OpenAI-ES).
CASES = {
    "adam_default": {},
    "sgd_options": dict(
        optimizer="sgd", return_proc_mode="centered_sign_rank", mirrored_sampling=False,
        divide_by_stdev=True, reward_shift=0.5, discretize_actions=True, ac_bins=4,
        eval_prob=0.1, learning_rate=0.02, l2coeff=0.01, nonlin="relu",
    ),
    "pybullet_ars": dict(
        env="InvertedPendulumBulletEnv-v0", algo="ars", hidden_dims=(), top_directions=3,
        num_workers=2, envs_per_worker=2, population_size=12, timesteps_per_gen=1000,
        reward_shift=0.2,
    ),
    "mujoco_pgpe_resume": dict(algo="pgpe", optimizer="clipup", max_speed=0.05,
                               hidden_dims=(8,), num_workers=2, envs_per_worker=2),
    "ray_openai_es": dict(
        env="InvertedPendulumBulletEnv-v0", backend="ray", num_workers=2, envs_per_worker=2,
        population_size=12, timesteps_per_gen=1000, ac_noise_std=0.05,
    ),
}  # fmt: skip
RESUME_AFTER = {"mujoco_pgpe_resume": 2}  # generations before a checkpoint and a restart


def _trainer(cfg):
    from esjax.trainer import Trainer

    trainer = Trainer.from_config(cfg, log=lambda s: None)
    trainer.start()
    return trainer


def run_case(name: str, **overrides) -> tuple[list[dict], np.ndarray]:
    """(log rows, final θ) of case ``name`` (``overrides``: e.g. a worker layout); a case
    in RESUME_AFTER is checkpointed, closed and resumed in a new trainer midway."""
    from esjax.config import Config
    from esjax.run.checkpoint import CheckpointStore
    from esjax.run.state import load_run

    cfg = Config(**{**COMMON, **CASES[name], **overrides})
    first = RESUME_AFTER.get(name, cfg.max_generations)
    trainer = _trainer(cfg)
    try:
        rows = [trainer.step() for _ in range(first)]
        if first < cfg.max_generations:
            with tempfile.TemporaryDirectory() as run_dir:
                store = CheckpointStore(run_dir, keep=1)
                trainer.save(store)
                store.close()
                trainer.close()
                trainer = _trainer(cfg)
                trainer.restore(load_run(Path(run_dir), "latest", trainer.cfg, trainer.info))
            rows += [trainer.step() for _ in range(cfg.max_generations - first)]
    finally:
        trainer.close()
    return rows, np.asarray(trainer.state.theta)


def read_golden(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(deterministic log columns (generations, len(COLUMNS)), final θ) of case ``name``."""
    with open(HERE / f"{name}.csv", newline="") as f:
        golden = list(csv.DictReader(f))
    return np.array([[float(g[c]) for c in COLUMNS] for g in golden]), np.load(
        HERE / f"{name}_theta.npy"
    )


def columns(rows: list[dict]) -> np.ndarray:
    return np.array([[float(r[c]) for c in COLUMNS] for r in rows])


def main(names: list[str]) -> None:
    for name in names:
        rows, theta = run_case(name)
        with open(HERE / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow([repr(float(r[c])) for c in COLUMNS])
        np.save(HERE / f"{name}_theta.npy", theta)
        print(name, "recorded:", len(rows), "generations")


if __name__ == "__main__":
    main(sys.argv[1:] or list(CASES))
