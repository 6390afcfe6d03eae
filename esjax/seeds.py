"""``python -m esjax.seeds``: one config, several seeds, and how far the result holds.

    python -m esjax.seeds --preset Hopper-v5 --seeds 0 1 2 [--target 3403] [train flags]

Runs ``python -m esjax.train FLAGS --seed S`` for each seed (side by side when the cores
allow, else in turn), each in ``OUT/seed_S/``, then writes ``OUT/summary.md``,
``OUT/summary.json`` and ``OUT/curves.png``. Resumable: rerun the same command and a
finished seed is not rerun, an interrupted one continues from its checkpoint; more seeds
can be added later.

**Protocol** (every result in ``experiments/results`` follows it):

- *Policy scored*: θ itself, by ``--eval-episodes`` noiseless episodes run every
  ``--eval-every`` generations (the ``PeriodicEval*`` log columns). The evaluation of
  generation g scores the θ that generation g started from.
- *Timesteps counted*: every env step the training simulated before that θ existed:
  training episodes, ``--eval-prob`` episodes and episodes run but thrown away
  (``EnvStepsSoFar``), minus the periodic evaluations' own steps
  (``PeriodicEvalStepsSoFar``), reported apart.
- *Across seeds* (rliable's practice, Agarwal et al. 2021): the median, the interquartile
  mean (the mean of the middle 50 %) and a 95 % percentile-bootstrap confidence interval
  of the IQM over seeds (10,000 resamples of the seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from esjax.errors import ConfigError
from esjax.parsing import DefaultsFormatter, OneLineParser
from esjax.run.rundir import write_atomically
from esjax.run.seed_stats import eval_curve, shown_path, write_summary

# Flags esjax.seeds sets for each seed itself.
OWN_FLAGS = ("--seed", "--run-dir", "--resume")


# -- what one run measured (pure, given its log) -------------------------------------
@dataclass
class SeedRun:
    """One seed's run: where it is, what it cost, and its evaluation curve."""

    seed: int
    command: list[str]
    run_dir: str
    wall_s: float  # of the esjax.train call that finished it
    env: str = ""
    steps: list[int] = field(default_factory=list)  # env steps before each evaluated θ
    eval_mean: list[float] = field(default_factory=list)  # its mean evaluation return
    eval_std: list[float] = field(default_factory=list)
    eval_episodes: int = 0  # episodes per evaluation
    total_env_steps: int = 0  # every env step of the run, evaluations included
    eval_env_steps: int = 0  # of which the periodic evaluations ran

    def to_dict(self) -> dict:
        return asdict(self)


# -- running the seeds (processes, files) ----------------------------------------------
def _run_dir_of(seed_dir: Path) -> Path | None:
    """The newest run directory esjax.train made in ``seed_dir``."""
    runs = sorted(p for p in seed_dir.iterdir() if (p / "config.json").is_file())
    return runs[-1] if runs else None


def run_one_seed(flags: list[str], seed: int, out: Path, env: str = "") -> SeedRun:
    """Train ``seed`` with ``flags`` in ``out/seed_SEED`` (continuing a run there that has
    a checkpoint); its SeedRun. RuntimeError (the run's last line) if it fails."""
    seed_dir = (out / f"seed_{seed}").absolute()
    seed_dir.mkdir(parents=True, exist_ok=True)
    start = [sys.executable, "-m", "esjax.train", *flags, "--seed", str(seed),
             "--run-dir", str(seed_dir)]  # fmt: skip
    previous = _run_dir_of(seed_dir)
    command = start
    if (
        previous is not None
        and (previous / "checkpoints").is_dir()
        and any((previous / "checkpoints").iterdir())
    ):
        command = [sys.executable, "-m", "esjax.train", "--resume", str(previous)]
    output = seed_dir / "train.log"
    t0 = time.perf_counter()
    with open(output, "a") as f:
        f.write(f"$ {' '.join(command)}\n")
        f.flush()
        proc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    wall = time.perf_counter() - t0
    text = output.read_text()
    last = (text.strip().splitlines() or ["(no output)"])[-1]
    if proc.returncode != 0 and not (proc.returncode == 2 and "already spent" in last):
        raise RuntimeError(f"seed {seed} exited {proc.returncode}: {last} (see {output})")
    found = re.findall(r"^run directory: (.+)$", text, re.MULTILINE)
    run_dir = previous if command is not start else Path(found[-1].strip())
    shown = ["python", *start[1:]]
    return SeedRun(seed, shown, str(run_dir), wall, env, **eval_curve(run_dir))


def default_parallel(workers: int) -> int:
    """Seeds side by side: as many as the cores hold at ``workers`` processes each."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class SeedsStore:
    """``OUT/seeds.json``: the train flags and every finished seed's SeedRun."""

    def __init__(self, out: Path, flags: list[str]):
        self.path = out / "seeds.json"
        self.flags = flags
        saved = json.loads(self.path.read_text()) if self.path.exists() else None
        if saved is not None and saved["flags"] != flags:
            raise ConfigError(
                f"{out} holds seeds trained with other flags ({' '.join(saved['flags'])}): "
                "repeat those flags, or pass --out another folder"
            )
        self.runs: dict[int, dict] = {int(k): v for k, v in (saved or {}).get("runs", {}).items()}

    def add(self, run: SeedRun) -> None:
        """Record a finished seed."""
        self.runs[run.seed] = run.to_dict()
        self.save()

    def save(self) -> None:
        data = {"flags": self.flags, "runs": {str(k): v for k, v in sorted(self.runs.items())}}
        text = json.dumps(data, indent=1) + "\n"
        write_atomically(self.path, lambda t: t.write_text(text))


def run_seeds(flags: list[str], seeds: list[int], out: Path, parallel: int = 1,
              env: str = "", say=print) -> list[dict]:  # fmt: skip
    """Train every seed of ``seeds`` not finished in ``out`` yet (``parallel`` at a time);
    the SeedRun records of ``seeds``, in order. RuntimeError if one fails (the others
    finish first and are kept)."""
    out.mkdir(parents=True, exist_ok=True)
    store = SeedsStore(out, flags)
    lock = threading.Lock()
    print_line = say

    def say(line: str) -> None:  # one whole line at a time from the seeds' threads
        with lock:
            print_line(line)

    todo = [s for s in seeds if s not in store.runs]
    for s in seeds:
        if s in store.runs:
            say(f"seed {s}: finished earlier ({shown_path(store.runs[s]['run_dir'], out)})")
    failures = []

    def one(seed: int) -> None:
        say(f"seed {seed}: training (output: {out / f'seed_{seed}' / 'train.log'})")
        try:
            run = run_one_seed(flags, seed, out, env)
        except RuntimeError as e:
            failures.append(str(e))
            say(f"seed {seed}: FAILED: {e}")
            return
        store.add(run)
        best = max(run.eval_mean, default=math.nan)
        say(f"seed {seed}: done in {run.wall_s:.0f} s, best evaluation {best:.1f}, "
            f"{run.total_env_steps:,} env steps ({shown_path(run.run_dir, out)})")  # fmt: skip

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(one, todo))
    if failures:
        raise RuntimeError(failures[0])
    return [store.runs[s] for s in seeds]


# -- the command -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m esjax.seeds",
        description="Train one config with several seeds and summarize them (median, "
        "interquartile mean and its bootstrap 95% CI, one plot). Any other flag goes to "
        "esjax.train (e.g. --preset Hopper-v5 --max-timesteps 5e6).",
        formatter_class=DefaultsFormatter,
        allow_abbrev=False,  # --seed is a train flag, not short for --seeds
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="the seeds")
    p.add_argument("--target", type=float, default=None,
                   help="report env steps to this evaluation return (default: the flags' "
                   "--target-return, if any; the runs do not stop at it)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="folder of the seeds' runs and the summary (default "
                   "runs/seeds/PRESET or runs/seeds/ENV)")  # fmt: skip
    p.add_argument("--parallel", type=int, default=0,
                   help="seeds trained side by side; 0: as many as the cores hold at the "
                   "runs' --num-workers (1 with --backend ray)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    from esjax.presets import NO_PRESET
    from esjax.train import parse

    parser = build_parser()
    args, flags = parser.parse_known_args(argv)
    own = [f for f in flags if f.split("=")[0] in OWN_FLAGS]
    if own:
        parser.fail(f"{own[0]} is set by esjax.seeds for each seed: remove it")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.fail(f"--seeds must be distinct and >= 0 (got {args.seeds})")
    if args.parallel < 0:
        parser.fail(f"--parallel must be >= 0 (got {args.parallel})")
    try:
        from esjax.rollout.envs import check_env_id

        cfg, _, settings = parse([*flags, "--seed", str(args.seeds[0])])
        check_env_id(cfg.env)
    except ConfigError as e:
        parser.fail(str(e))
    label = Path(cfg.preset).stem if cfg.preset != NO_PRESET else cfg.env
    out = args.out or Path(cfg.run_dir) / "seeds" / label
    if out.exists() and not out.is_dir():
        parser.fail(f"--out {out} is a file: give a folder for the seeds' runs")
    target = args.target if args.target is not None else (
        cfg.target_return if math.isfinite(cfg.target_return) else None)  # fmt: skip
    workers = 1 if cfg.backend == "inline" else cfg.workers
    parallel = args.parallel or (1 if cfg.backend == "ray" else default_parallel(workers))
    command = " ".join(["python -m esjax.seeds", *(sys.argv[1:] if argv is None else argv)])
    print(settings, flush=True)
    print(f"{len(args.seeds)} seeds of {cfg.env} ({cfg.algo}) in {out}, {parallel} at a time")
    try:
        runs = run_seeds(flags, args.seeds, out, parallel, cfg.env,
                         say=lambda line: print(line, flush=True))  # fmt: skip
    except ConfigError as e:
        parser.fail(str(e))
    except RuntimeError as e:
        print(f"esjax: error: {e}; the finished seeds are kept: rerun the same command to "
              "continue", file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt:  # the runs got the signal too, and checkpointed
        print("stopped; the finished seeds are kept and the others continue from their "
              "checkpoints: rerun the same command", file=sys.stderr)  # fmt: skip
        return 128 + signal.SIGINT
    _, lines = write_summary(out, runs, target, f"{label} ({cfg.algo})", command)
    print("\n".join(lines[2:-2]))
    print(f"wrote {out / 'summary.md'}, {out / 'summary.json'}, {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
