"""Summarize runs already trained, one per seed, within a budget of env steps.

    python -m experiments.seed_report --budget 10000000 --target 1500 --also 2500 \\
        --title "AntBulletEnv-v0 preset" --out experiments/results/pybullet/AntBulletEnv-v0 \\
        RUN_DIR|SUMMARY_JSON:SEED [...] [--notes notes.md]

For runs trained by hand (resumed over sessions, or forked at a checkpoint) rather than
by ``esjax.seeds``: each run's evaluation curve is cut at ``--budget`` env steps and the
seeds summarized with ``esjax.seeds``'s protocol and statistics (``summary.md``,
``summary.json``, ``curves.png`` in ``--out``), with the env steps to each ``--also``
target too. Wall time is the log's ``TimeElapsed`` at the last generation within the
budget (training time, summed over resumes).

A seed can also come from an earlier report's ``summary.json`` (``PATH:SEED``), whose
record keeps its curve: seeds reported in different sessions are summarized together
without their run directories (runs are not committed). Its wall time and env steps are
the record's, so its evaluations must all lie within ``--budget``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from esjax.run.metrics import read_log
from esjax.run.seed_stats import eval_curve, median_reach, training_steps_before, write_summary
from experiments.harness import REPO, write_markdown


def run_within(run_dir: Path, budget: float) -> dict:
    """A run's seed, command-free record and evaluation curve, cut at ``budget`` env steps
    (the record ``esjax.run.seed_stats.summarize`` reads)."""
    curve = eval_curve(run_dir)
    keep = [i for i, s in enumerate(curve["steps"]) if s <= budget]
    log = read_log(run_dir)
    before = training_steps_before(log)
    last = max(i for i in range(len(log["TimeElapsed"])) if before[i] <= budget)
    config = json.loads((run_dir / "config.json").read_text())
    return {
        **curve,
        "steps": [curve["steps"][i] for i in keep],
        "eval_mean": [curve["eval_mean"][i] for i in keep],
        "eval_std": [curve["eval_std"][i] for i in keep],
        "seed": config["seed"],
        "run_dir": str(run_dir),
        "wall_s": float(log["TimeElapsed"][last]),
        "total_env_steps": int(before[last + 1]),
    }


def stored_seed(spec: str, budget: float) -> dict:
    """The seed ``SEED`` of ``PATH:SEED``, an earlier report's record with its curve,
    all within ``budget`` (ValueError naming the problem)."""
    path, _, seed = spec.rpartition(":")
    try:
        records = json.loads(Path(path).read_text())["seeds"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{spec}: not a readable summary.json with seeds ({e})") from None
    record = next((r for r in records if str(r["seed"]) == seed), None)
    if record is None:
        raise ValueError(f"{spec}: {path} has no seed {seed} (it has "
                         f"{', '.join(str(r['seed']) for r in records)})")  # fmt: skip
    if "curve" not in record:
        raise ValueError(f"{spec}: that report predates stored curves; report its run "
                         "directory instead")  # fmt: skip
    if any(s > budget for s in record["curve"]["steps"]):
        raise ValueError(f"{spec}: reported past --budget {budget:,.0f} (its evaluations "
                         "go further); report its run directory instead")  # fmt: skip
    return {**record["curve"],
            "seed": record["seed"], "run_dir": record["run_dir"], "wall_s": record["wall_s"],
            "total_env_steps": record["total_env_steps"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.seed_report",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("runs", nargs="+",
                   help="run directories, or PATH/summary.json:SEED, one per seed")  # fmt: skip
    p.add_argument("--budget", type=float, required=True, help="env steps per seed")
    p.add_argument("--target", type=float, required=True)
    p.add_argument("--also", type=float, nargs="*", default=[], help="more targets")
    p.add_argument("--title", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--notes", type=Path, help="Markdown appended to summary.md")
    args = p.parse_args(argv)
    runs = []
    for spec in args.runs:
        if spec.rpartition(":")[0].endswith(".json"):
            try:
                runs.append(stored_seed(spec, args.budget))
            except ValueError as e:
                p.error(str(e))
        elif (Path(spec) / "log.csv").is_file():
            runs.append(run_within(Path(spec).absolute(), args.budget))
        else:
            p.error(f"{spec}: not a run directory (no log.csv) nor SUMMARY_JSON:SEED")
    args.out.mkdir(parents=True, exist_ok=True)
    argv_text = shlex.join(sys.argv[1:] if argv is None else argv)
    _, lines = write_summary(args.out, runs, args.target,
                             f"{args.title} within {args.budget:,.0f} env steps",
                             f"python -m experiments.seed_report {argv_text}")  # fmt: skip
    at = next(i for i, line in enumerate(lines) if line.startswith("Protocol:"))
    for target in args.also:
        med, reached = median_reach(runs, target)
        each = ", ".join("not reached" if x is None else f"{x:,}" for x in reached)
        lines[at:at] = [f"Target {target:g}: median env steps to it "
                        f"{'never (median seed)' if med is None else f'{med:,.0f}'} "
                        f"(seeds: {each}).", ""]  # fmt: skip
        at += 2
    notes = args.notes.read_text() if args.notes else None
    text = "\n".join(lines).replace(str(REPO) + "/", "")
    print(write_markdown(args.out / "summary.md", text.splitlines(), notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
