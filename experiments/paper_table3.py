"""The ES paper's Table 3 (Salimans et al. 2017) reproduced on Gymnasium's MuJoCo v5 envs.

    python -m experiments.paper_table3                  # all six envs, seeds 0 1 2
    python -m experiments.paper_table3 --envs Hopper-v5 --seeds 0 1 --max-steps 1e7
    python -m experiments.paper_table3 --quick --out /tmp/t3   # tiny budgets: a smoke test

Each env trains with its OpenAI-ES settings (``experiments/strategies/ENV/openai-es.toml``,
what its preset was before ARS and PGPE) for each seed (through ``esjax.seeds``: a seed
already finished with the same flags is not rerun), at most
``--budget-frac`` x the paper's ES timesteps (and ``--max-steps``), and stops early once
θ's evaluation reaches TRPO's score. Results accumulate in ``OUT/table3_runs.json`` (a
later call replaces the (env, seed) runs it repeats) and ``OUT/table3.md`` is rewritten
from all of them, with a learning-curve PNG per env. Protocol: ``experiments.harness``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from experiments.harness import (
    QUICK_FLAGS,
    REPO,
    git_commit,
    machine,
    median_reach,
    preset_seeds,
    pyplot,
    save_figure,
    write_markdown,
)

# Per env: TRPO's score at 25/50/75/100 % of its progress at 5M timesteps, and the
# timesteps ES needed to reach each (the paper's Table 3).
PAPER = {
    "HalfCheetah-v5": ([-1.35, 793.55, 1589.83, 2385.79], [1.36e5, 8.28e5, 1.42e6, 2.88e6]),
    "Hopper-v5": ([877.45, 1718.16, 2561.11, 3403.46], [3.83e5, 3.73e6, 9.63e6, 3.16e7]),
    "InvertedDoublePendulum-v5": (
        [2358.98, 4609.68, 6874.03, 9104.07], [3.98e5, 4.66e5, 5.30e5, 5.39e6]),
    "InvertedPendulum-v5": ([276.59, 519.15, 753.17, 1000.00], [6.25e4, 1.43e5, 2.55e5, 4.55e5]),
    "Swimmer-v5": ([41.97, 70.73, 99.68, 128.25], [5.88e5, 8.52e5, 1.23e6, 1.39e6]),
    "Walker2d-v5": ([957.68, 1916.48, 2872.81, 3830.03], [6.43e5, 1.29e7, 2.31e7, 3.79e7]),
}  # fmt: skip
LEVELS = ("25 %", "50 %", "75 %", "100 %")


def budget(env: str, frac: float, cap: float) -> int:
    """Training timesteps a run of ``env`` may use."""
    return int(min(frac * PAPER[env][1][-1], cap))


def merge_runs(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with the (env, seed) runs in ``new`` replaced, sorted by env and seed."""
    done = {(r["env"], r["seed"]) for r in new}
    runs = [r for r in old if (r["env"], r["seed"]) not in done] + new
    return sorted(runs, key=lambda r: (r["env"], r["seed"]))


def _fmt_steps(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.2e}"


def reach_summary(runs: list[dict], target: float) -> tuple[float | None, str]:
    """(median env steps to ``target`` over seeds, 'median (min-max)' text); a seed that
    never reached it counts as infinitely late."""
    med, reached = median_reach(runs, target)
    keyed = sorted(math.inf if x is None else x for x in reached)
    n_ok = sum(x is not None for x in reached)
    if n_ok == 0:
        return None, f"not reached (0/{len(runs)} seeds)"
    lo, hi = keyed[0], keyed[-1]
    span = f"{lo:.2e}-{hi:.2e}" if not math.isinf(hi) else f"{lo:.2e}-not reached"
    return med, f"{_fmt_steps(med)} ({span}; {n_ok}/{len(runs)} seeds)"


def write_report(out: Path, runs: list[dict], meta: dict) -> Path:
    """``out/table3.md`` from ``runs`` (and a curve PNG per env)."""
    envs = [e for e in PAPER if any(r["env"] == e for r in runs)]
    lines = [
        "# The ES paper's Table 3, reproduced with esjax on MuJoCo v5",
        "",
        "Salimans et al. 2017 (arXiv 1703.03864), Table 3: timesteps ES needed to reach "
        "25/50/75/100 % of TRPO's score at 5M timesteps. The paper ran MuJoCo 1.x `-v1` "
        "tasks in gym; these are Gymnasium's `-v5` envs, their maintained successors, whose "
        "reward terms and termination are close but not identical.",
        "",
        "**Protocol.** The policy scored is θ itself: the mean return of "
        f"{meta['eval_episodes']} noiseless episodes (different reset seeds each time), run "
        "by the workers every generation (`--eval-every 1`), outside the training budget "
        "and reported apart. A target counts as reached at the first evaluation whose mean "
        "is at or above it. The timesteps counted are every environment step the training "
        "simulated before that θ existed: the training episodes, any `--eval-prob` "
        "episodes and the episodes run but thrown away; the evaluation episodes' own steps "
        "are not counted. Runs stop early once θ scores TRPO's 100 % score. Medians are "
        "over seeds; a seed that never reached a target counts as infinitely late.",
        "",
        f"- Machine: {meta['machine']}",
        f"- Commit: `{meta['commit']}`; finished {meta['date']}",
        "- Reproduce: "
        + "; ".join(f"`{c}`" for c in meta["commands"])
        + " (each run's own command is in the table below)",
        "",
        "| env | target | TRPO score | paper ES timesteps | esjax timesteps: median (range; "
        "seeds reached) | esjax / paper |",
        "| --- | --- | ---: | ---: | --- | ---: |",
    ]
    for env in envs:
        er = [r for r in runs if r["env"] == env]
        for level, score, paper_steps in zip(LEVELS, *PAPER[env]):
            med, text = reach_summary(er, score)
            ratio = "-" if med is None else f"{med / paper_steps:.2f}"
            lines.append(f"| {env} | {level} | {score:.2f} | {paper_steps:.2e} | {text} | "
                         f"{ratio} |")  # fmt: skip
    lines += ["", "## Runs", "",
              "| env | seed | best evaluation | env steps in all (evaluation) | wall time | "
              "command |", "| --- | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
    for r in runs:
        best = max(r["eval_mean"], default=math.nan)
        cmd = " ".join(r["command"]).replace(str(REPO) + "/", "")
        lines.append(f"| {r['env']} | {r['seed']} | {best:.1f} | {r['total_env_steps']:,} "
                     f"({r['eval_env_steps']:,}) | {r['wall_s']:.0f} s | `{cmd}` |")  # fmt: skip
    lines += ["", "## Learning curves", "",
              "θ's evaluation (mean of the evaluation episodes) against env steps, every "
              "seed; dashed: TRPO's score at 5M steps; dotted: the paper's ES timesteps for "
              "it.", "", "![curves](table3.png)", ""]  # fmt: skip
    for env in envs:
        lines.append(f"- [{env}](table3_{env}.png)")
    path = write_markdown(out / "table3.md", lines, meta.get("notes"))
    plot_curves(out, runs, envs)
    return path


def plot_curves(out: Path, runs: list[dict], envs: list[str]) -> None:
    """``out/table3.png`` (all envs) and ``out/table3_ENV.png`` (one each)."""
    plt = pyplot()

    def draw(ax, env):
        for i, r in enumerate(x for x in runs if x["env"] == env):
            ax.plot(r["steps"], r["eval_mean"], color=f"C{i % 10}", lw=1.2,
                    label=f"seed {r['seed']}")  # fmt: skip
        ax.axhline(PAPER[env][0][-1], color="k", ls="--", lw=1, label="TRPO at 5M")
        ax.axvline(PAPER[env][1][-1], color="k", ls=":", lw=1, label="paper ES")
        ax.set_title(env, fontsize=10)
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")

    cols = min(3, len(envs))
    rows = math.ceil(len(envs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), dpi=90, squeeze=False)
    for ax, env in zip(axes.flat, envs):
        draw(ax, env)
    for ax in list(axes.flat)[len(envs) :]:
        ax.axis("off")
    save_figure(fig, out / "table3.png")
    for env in envs:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
        draw(ax, env)
        save_figure(fig, out / f"table3_{env}.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.paper_table3",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--envs", nargs="+", default=list(PAPER), choices=list(PAPER))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget-frac", type=float, default=1.0,
                   help="training timesteps per run, as a fraction of the paper's ES "
                   "timesteps for the 100 %% target")  # fmt: skip
    p.add_argument(
        "--max-steps",
        type=float,
        default=math.inf,
        help="cap on any run's training timesteps (for this machine)",
    )
    p.add_argument("--out", type=Path, default=REPO / "experiments" / "results")
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=REPO / "runs" / "table3",
        help="where the run directories go (not committed)",
    )
    p.add_argument("--notes", type=Path, default=None, help="a Markdown file for ## Notes")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite table3.md and the PNGs from table3_runs.json; run nothing",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="2 tiny generations per env and seed (a smoke test of the harness)",
    )
    p.add_argument(
        "--extra",
        nargs=argparse.REMAINDER,
        default=[],
        help="flags passed on to esjax.train (after the openai-es probe's)",
    )
    args = p.parse_args(argv)
    if args.quick and args.out == p.get_default("out"):
        p.error("--quick writes tiny, meaningless results: give --out elsewhere")
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "table3_runs.json"
    if args.report_only and not store.exists():
        p.error(f"--report-only: {store} does not exist; run some envs first")
    if not args.report_only:
        new = []
        for env in args.envs:
            steps = budget(env, args.budget_frac, args.max_steps)
            extra = [*args.extra, "--target-return", str(PAPER[env][0][-1])]
            if args.quick:
                extra += QUICK_FLAGS
            probe = str(REPO / "experiments" / "strategies" / env / "openai-es.toml")
            new += preset_seeds(env, probe, args.seeds, steps, args.runs_dir, extra)
            runs, meta = _store(store, new, argv)
    runs, meta = _store(store, [], argv, notes=args.notes, touch=not args.report_only)
    path = write_report(args.out, runs, meta)
    print(f"wrote {path}")
    return 0


def _store(store: Path, new: list[dict], argv, notes: Path | None = None,
           touch: bool = True) -> tuple[list[dict], dict]:  # fmt: skip
    """Merge ``new`` into the runs file as it is now (another invocation may have added
    runs meanwhile) and write it back: (all runs, metadata)."""
    old = json.loads(store.read_text()) if store.exists() else {}
    runs = merge_runs(old.get("runs", []), new)
    meta = _meta(runs, old, argv) if touch else old.get("meta", {})
    if notes:
        meta["notes"] = notes.read_text()
    store.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")
    return runs, meta


def _meta(runs: list[dict], old: dict, argv: list[str] | None) -> dict:
    """The results' metadata: this machine and commit, and every invocation so far."""
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m experiments.paper_table3", *argv])
    meta = dict(old.get("meta", {}))
    commands = [c for c in meta.get("commands", []) if c != command] + [command]
    meta.update(machine=machine(), commit=git_commit(), date=time.strftime("%Y-%m-%d"),
                eval_episodes=max((r["eval_episodes"] for r in runs), default=0),
                commands=commands)  # fmt: skip
    return meta


if __name__ == "__main__":
    sys.exit(main())
