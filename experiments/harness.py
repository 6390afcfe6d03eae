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

import csv
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


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
    with open(Path(run_dir) / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = {"steps": [], "eval_mean": [], "eval_std": [], "eval_episodes": 0}
    before = 0  # training env steps before this generation
    for r in rows:
        if int(r["PeriodicEvalCount"]):
            out["steps"].append(before)
            out["eval_mean"].append(float(r["PeriodicEvalRewMean"]))
            out["eval_std"].append(float(r["PeriodicEvalRewStd"]))
            out["eval_episodes"] = int(r["PeriodicEvalCount"])
        before = int(r["EnvStepsSoFar"]) - int(r["PeriodicEvalStepsSoFar"])
    out["total_env_steps"] = int(rows[-1]["EnvStepsSoFar"]) if rows else 0
    out["eval_env_steps"] = int(rows[-1]["PeriodicEvalStepsSoFar"]) if rows else 0
    return out


def run_seed(env: str, preset: str, seed: int, max_timesteps: int, runs_dir: Path,
             extra: list[str] | tuple[str, ...] = ()) -> RunResult:  # fmt: skip
    """Train one seed and read its curve."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    command = train_command(preset, seed, max_timesteps, runs_dir, extra)
    output = runs_dir / f"{preset}_seed{seed}.out"
    run_dir, wall = run_training(command, output)
    shown = ["python", *command[1:]]
    return RunResult(env, seed, shown, str(run_dir), wall, **eval_curve(run_dir))


def first_reach(steps: list[int], evals: list[float], target: float) -> int | None:
    """Env steps at the first evaluation scoring >= ``target`` (None: never)."""
    return next((s for s, e in zip(steps, evals) if e >= target), None)


def machine() -> str:
    """CPU model and core count of this machine, for the results files."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def git_commit() -> str:
    """The checkout's commit (with '+dirty' when it has uncommitted changes)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()  # fmt: skip
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
