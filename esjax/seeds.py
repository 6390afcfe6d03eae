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
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from esjax.config import DefaultsFormatter, OneLineParser
from esjax.errors import ConfigError
from esjax.run.rundir import write_atomically

BOOTSTRAP_RESAMPLES = 10_000
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


def eval_curve(run_dir: Path) -> dict:
    """The periodic evaluations of a run (see the protocol), read from its log."""
    from esjax.plot import read_log

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
        "total_env_steps": int(env_steps[-1]) if env_steps else 0,
        "eval_env_steps": int(eval_steps[-1]) if eval_steps else 0,
    }


def first_reach(steps: list[int], evals: list[float], target: float) -> int | None:
    """Env steps at the first evaluation scoring >= ``target`` (None: never)."""
    return next((s for s, e in zip(steps, evals) if e >= target), None)


def median_reach(curves: list[dict], target: float) -> tuple[float | None, list[int | None]]:
    """(median over seeds of the env steps to ``target``, None if that median never
    reached it; each seed's steps). A seed that never reached it counts as infinitely late."""
    reached = [first_reach(c["steps"], c["eval_mean"], target) for c in curves]
    med = statistics.median(math.inf if x is None else x for x in reached)
    return (None if math.isinf(med) else med), reached


# -- statistics across seeds (pure) ----------------------------------------------------
def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50 % (scipy's trim_mean(x, 0.25): the
    lowest and highest floor(n/4) values cut)."""
    x = np.sort(np.asarray(values, np.float64))
    cut = int(0.25 * len(x))
    return float(np.mean(x[cut : len(x) - cut]))


def bootstrap_ci(values, stat=iqm, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:  # fmt: skip
    """Percentile-bootstrap interval of ``stat`` over ``values`` (resampled with
    replacement; seeded, so a summary is reproducible)."""
    x = np.asarray(values, np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(resamples, len(x)))
    stats = np.sort(x[idx], axis=1)
    if stat is iqm:  # vectorized: the same cut for every resample
        cut = int(0.25 * len(x))
        boot = stats[:, cut : len(x) - cut].mean(axis=1)
    else:
        boot = np.array([stat(s) for s in stats])
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(boot, [tail, 100 - tail])
    return float(lo), float(hi)


def aggregate(values: list[float]) -> dict:
    """Median, IQM and the IQM's 95 % bootstrap interval of per-seed ``values``."""
    lo, hi = bootstrap_ci(values)
    return {"median": float(np.median(values)), "iqm": iqm(values), "ci95": [lo, hi],
            "n": len(values)}  # fmt: skip


def summarize(runs: list[dict], target: float | None = None) -> dict:
    """Per seed: best and final evaluation (and env steps to ``target``); across seeds:
    ``aggregate`` of each. Runs without an evaluation are listed, not aggregated."""
    per_seed = []
    for r in runs:
        row = {"seed": r["seed"], "run_dir": r["run_dir"], "wall_s": r["wall_s"],
               "total_env_steps": r["total_env_steps"], "evaluations": len(r["eval_mean"]),
               "best": max(r["eval_mean"], default=math.nan),
               "final": r["eval_mean"][-1] if r["eval_mean"] else math.nan}  # fmt: skip
        if target is not None:
            row["steps_to_target"] = first_reach(r["steps"], r["eval_mean"], target)
        per_seed.append(row)
    scored = [s for s in per_seed if s["evaluations"]]
    out = {"seeds": per_seed, "target": target}
    for key in ("best", "final"):
        out[key] = aggregate([s[key] for s in scored]) if scored else None
    if target is not None:
        reached = [s["steps_to_target"] for s in per_seed]
        med = statistics.median(math.inf if x is None else x for x in reached)
        out["steps_to_target"] = {
            "median": None if math.isinf(med) else med,  # an unreached seed: infinitely late
            "reached": sum(x is not None for x in reached), "n": len(reached),
        }  # fmt: skip
        if reached and None not in reached:  # every seed reached it: its spread too
            out["steps_to_target"].update(aggregate(reached))
    return out


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
            say(f"seed {s}: finished earlier ({_shown(store.runs[s]['run_dir'], out)})")
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
            f"{run.total_env_steps:,} env steps ({_shown(run.run_dir, out)})")  # fmt: skip

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        list(pool.map(one, todo))
    if failures:
        raise RuntimeError(failures[0])
    return [store.runs[s] for s in seeds]


# -- the report ------------------------------------------------------------------------
def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _shown(run_dir: str, out: Path | None) -> str:
    """``run_dir`` relative to the summary's folder when inside it."""
    try:
        return str(Path(run_dir).relative_to(out.absolute())) if out else run_dir
    except ValueError:
        return run_dir


def summary_lines(summary: dict, title: str, command: str, out: Path | None = None) -> list[str]:
    """The summary as Markdown (also what ``main`` prints); run folders relative to ``out``."""
    target = summary["target"]
    reach_head, reach_rule = (" steps to target |", " ---: |") if target is not None else ("", "")
    lines = [f"# {title}: {len(summary['seeds'])} seeds", "", f"`{command}`", "",
             f"| seed | best eval | final eval |{reach_head} env steps in all | wall | run |",
             f"| ---: | ---: | ---: |{reach_rule} ---: | ---: | --- |"]  # fmt: skip
    for s in summary["seeds"]:
        reach = ""
        if target is not None:
            steps = s["steps_to_target"]
            reach = f" {'not reached' if steps is None else f'{steps:,}'} |"
        run = _shown(s["run_dir"], out)
        lines.append(f"| {s['seed']} | {_fmt(s['best'])} | {_fmt(s['final'])} |{reach} "
                     f"{s['total_env_steps']:,} | {s['wall_s']:.0f} s | {run} |")  # fmt: skip
    lines += ["", "| across seeds | median | IQM | IQM 95 % CI (bootstrap) |",
              "| --- | ---: | ---: | --- |"]  # fmt: skip
    for key, name in (("best", "best evaluation"), ("final", "final evaluation")):
        a = summary[key]
        if a is not None:
            lines.append(f"| {name} | {a['median']:.1f} | {a['iqm']:.1f} | "
                         f"[{a['ci95'][0]:.1f}, {a['ci95'][1]:.1f}] |")  # fmt: skip
    if target is not None:
        t = summary["steps_to_target"]
        if "iqm" in t:
            lines.append(f"| env steps to {target:g} | {t['median']:,.0f} | {t['iqm']:,.0f} | "
                         f"[{t['ci95'][0]:,.0f}, {t['ci95'][1]:,.0f}] |")  # fmt: skip
        med = "never (median seed)" if t["median"] is None else f"{t['median']:,.0f}"
        lines += ["", f"Target {target:g}: reached by {t['reached']}/{t['n']} seeds; median "
                  f"env steps to it: {med} (a seed that never reached it counts as "
                  "infinitely late)."]  # fmt: skip
    lines += ["", "Protocol: θ scored by its periodic noiseless evaluations (mean of "
              "--eval-episodes); env steps = every step the training simulated, evaluation "
              "episodes apart; IQM = mean of the middle 50 % of seeds; CI = percentile "
              f"bootstrap over seeds ({BOOTSTRAP_RESAMPLES:,} resamples).", "",
              "![curves](curves.png)"]  # fmt: skip
    return lines


def plot_seeds(path: Path, runs: list[dict], title: str, target: float | None = None) -> None:
    """Every seed's evaluation curve, their median and interquartile band (each seed held
    at its latest evaluation, over the steps all seeds cover)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=90)
    curves = [r for r in runs if r["steps"]]
    for i, r in enumerate(curves):
        ax.step(r["steps"], r["eval_mean"], where="post", color=f"C{i % 10}", lw=0.9,
                alpha=0.6, label=f"seed {r['seed']}")  # fmt: skip
    if len(curves) > 1:
        start = max(r["steps"][0] for r in curves)
        end = min(r["steps"][-1] for r in curves)
        grid = np.array(sorted({s for r in curves for s in r["steps"] if start <= s <= end}))
        held = np.array([np.asarray(r["eval_mean"])[np.searchsorted(r["steps"], grid, "right") - 1]
                         for r in curves])  # fmt: skip
        lo, med, hi = np.percentile(held, [25, 50, 75], axis=0)
        ax.fill_between(grid, lo, hi, color="k", alpha=0.15, step="post", label="25-75 %")
        ax.step(grid, med, where="post", color="k", lw=2, label="median")
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:g}")
    ax.set_xlabel("env steps (training)")
    ax.set_ylabel("evaluation return of θ")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_summary(out: Path, runs: list[dict], target: float | None, title: str,
                  command: str) -> tuple[dict, list[str]]:  # fmt: skip
    """``out/summary.json``, ``out/summary.md`` and ``out/curves.png``: (summary, lines)."""
    summary = summarize(runs, target)
    lines = summary_lines(summary, title, command, out)
    (out / "summary.json").write_text(json.dumps({**summary, "command": command}, indent=1) + "\n")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    plot_seeds(out / "curves.png", runs, title, target)
    return summary, lines


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
