"""Run ``python -m esjax.train`` for several seeds and read back what the runs measured.

The protocol every result in ``experiments/results`` follows:

- **Policy scored**: θ itself, by ``--eval-episodes`` noiseless episodes run every
  ``--eval-every`` generations (the ``PeriodicEval*`` log columns). The evaluation of
  generation g scores the θ that generation g started from.
- **Timesteps counted**: every environment step the training simulated before that θ
  existed: training episodes used by the updates, ``--eval-prob`` episodes and episodes
  run but thrown away (``EnvStepsSoFar``), minus the periodic evaluations' own steps
  (``PeriodicEvalStepsSoFar``), which are reported apart.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from esjax.plot import read_log
from esjax.provenance import REPO, git_commit, machine

__all__ = ["QUICK_FLAGS", "REPO", "RunResult", "eval_curve", "first_reach", "git_commit",
           "machine", "median_reach", "pyplot", "run_seed", "run_training", "save_figure",
           "train_command", "write_markdown"]  # fmt: skip

# Flags that shrink any run to 2 tiny generations, its episodes in the trainer's process
# (no worker to start): the scripts' --quick smoke tests.
QUICK_FLAGS = ["--max-generations", "2", "--population-size", "8", "--timesteps-per-gen",
               "100", "--noise-table-size", "1000000", "--num-workers", "1",
               "--backend", "inline"]  # fmt: skip


@dataclass
class RunResult:
    """One seed's run: where it is, what it cost, and its evaluation curve."""

    env: str
    seed: int
    command: list[str]
    run_dir: str
    wall_s: float
    steps: list[int] = field(default_factory=list)  # env steps before each evaluated θ
    eval_mean: list[float] = field(default_factory=list)  # its mean evaluation return
    eval_std: list[float] = field(default_factory=list)
    eval_episodes: int = 0  # episodes per evaluation
    total_env_steps: int = 0  # every env step of the run, evaluations included
    eval_env_steps: int = 0  # of which the periodic evaluations ran

    def to_dict(self) -> dict:
        return asdict(self)


def train_command(preset: str, seed: int, max_timesteps: int, run_dir: Path,
                  extra: list[str] | tuple[str, ...] = ()) -> list[str]:  # fmt: skip
    """The CLI call that trains ``preset`` with ``seed`` for ``max_timesteps``."""
    return [
        sys.executable, "-m", "esjax.train", "--preset", preset, "--seed", str(seed),
        "--max-timesteps", str(int(max_timesteps)), "--run-dir", str(run_dir),
        "--snapshot-freq", "0", "--keep-checkpoints", "1", *extra,
    ]  # fmt: skip


def run_training(command: list[str], output: Path) -> tuple[Path, float]:
    """Run ``command`` (a ``train_command``) with its output going to ``output``;
    (the run directory it wrote, wall seconds). RuntimeError if it fails."""
    t0 = time.perf_counter()
    with open(output, "w") as f:
        proc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, cwd=REPO,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    wall = time.perf_counter() - t0
    text = output.read_text()
    if proc.returncode != 0:
        tail = text.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {tail[0]}")
    found = re.search(r"^run directory: (.+)$", text, re.MULTILINE)
    if not found:
        raise RuntimeError(f"{output}: the run printed no run directory")
    return Path(found.group(1).strip()), wall


def eval_curve(run_dir: Path) -> dict:
    """The periodic evaluations of a run (see the module's protocol), read from its log."""
    log = read_log(Path(run_dir))
    env_steps, eval_steps = log["EnvStepsSoFar"], log["PeriodicEvalStepsSoFar"]
    # Training env steps before each generation: those after the one before it.
    before = [0.0] + [a - b for a, b in zip(env_steps, eval_steps)][:-1]
    rows = [i for i, n in enumerate(log["PeriodicEvalCount"]) if n]
    return {
        "steps": [int(before[i]) for i in rows],
        "eval_mean": [log["PeriodicEvalRewMean"][i] for i in rows],
        "eval_std": [log["PeriodicEvalRewStd"][i] for i in rows],
        "eval_episodes": int(log["PeriodicEvalCount"][rows[-1]]) if rows else 0,
        "total_env_steps": int(env_steps[-1]),
        "eval_env_steps": int(eval_steps[-1]),
    }


def run_seed(env: str, preset: str, seed: int, max_timesteps: int, runs_dir: Path,
             extra: list[str] | tuple[str, ...] = ()) -> RunResult:  # fmt: skip
    """Train one seed and read its curve."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    command = train_command(preset, seed, max_timesteps, runs_dir, extra)
    name = f"{env}_{Path(preset).stem}" if preset.endswith(".toml") else preset
    output = runs_dir / f"{name}_seed{seed}.out"
    run_dir, wall = run_training(command, output)
    shown = ["python", *command[1:]]
    return RunResult(env, seed, shown, str(run_dir), wall, **eval_curve(run_dir))


def first_reach(steps: list[int], evals: list[float], target: float) -> int | None:
    """Env steps at the first evaluation scoring >= ``target`` (None: never)."""
    return next((s for s, e in zip(steps, evals) if e >= target), None)


def median_reach(curves: list[dict], target: float) -> tuple[float | None, list[int | None]]:
    """(median over seeds of the env steps to ``target``, None if that median never
    reached it; each seed's steps). A seed that never reached it counts as infinitely late."""
    reached = [first_reach(c["steps"], c["eval_mean"], target) for c in curves]
    med = statistics.median(math.inf if x is None else x for x in reached)
    return (None if math.isinf(med) else med), reached


def pyplot():
    """matplotlib.pyplot drawing to files only (the Agg backend), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Lay out ``fig``, write it to ``path`` and free it."""
    fig.tight_layout()
    fig.savefig(path)
    pyplot().close(fig)


def write_markdown(path: Path, lines: list[str], notes: str | None = None) -> Path:
    """Write a report's ``lines`` to ``path``, with ``notes`` (Markdown) as its last
    section; ``path``."""
    if notes:
        lines = [*lines, "", "## Notes", "", notes.strip()]
    path.write_text("\n".join(lines) + "\n")
    return path
