"""``python -m esjax.plot RUN_DIR [RUN_DIR ...]``: learning curves from log.csv as PNG."""

from __future__ import annotations

import sys
from pathlib import Path

from esjax.parsing import OneLineParser
from esjax.run.metrics import read_log

X_COLUMNS = {"timesteps": "TimestepsSoFar", "time": "TimeElapsed", "generation": "Generation"}
X_LABELS = {"timesteps": "timesteps", "time": "seconds", "generation": "generation"}


def plot_runs(run_dirs: list[Path], out: Path, x: str = "timesteps") -> None:
    """Population mean ± std, evaluation returns and best evaluation, runs overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 6), dpi=100)
    for i, run in enumerate(run_dirs):
        log = read_log(run)
        color = f"C{i % 10}"
        xs = np.array(log[X_COLUMNS[x]])
        mean, std = np.array(log["GenRewMean"]), np.array(log["GenRewStd"])
        ax.plot(xs, mean, color=color, label=f"{run.name}: population mean ± std")
        ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.15)
        ev = np.array(log.get("PeriodicEvalRewMean", []))  # else the --eval-prob episodes
        if not (ev.size and (~np.isnan(ev)).any()):
            ev = np.array(log["EvalGenRewardMean"])
        ok = ~np.isnan(ev)
        if ok.any():
            ax.plot(xs[ok], ev[ok], "o", ms=3, color=color, label=f"{run.name}: evaluation")
            ax.plot(xs[ok], np.maximum.accumulate(ev[ok]), "--", color=color, alpha=0.8,
                    label=f"{run.name}: best evaluation")  # fmt: skip
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m esjax.plot", description=__doc__.split(":")[1])
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    p.add_argument(
        "--out", type=Path, default=None,
        help="PNG file (default: RUN_DIR/curves.png for one run, else curves.png)",
    )  # fmt: skip
    p.add_argument("--x", choices=tuple(X_COLUMNS), default="timesteps", help="x axis")
    args = p.parse_args(argv)
    for run in args.run_dirs:  # the runs first: a missing run is the problem, not --out
        if not run.is_dir():
            p.fail(f"{run}: no such run directory")
    default = args.run_dirs[0] / "curves.png" if len(args.run_dirs) == 1 else Path("curves.png")
    out = args.out or default
    if out.suffix.lower() != ".png":
        p.fail(f"--out {out}: give a .png file name")
    if not out.absolute().parent.is_dir():
        p.fail(f"--out {out}: folder {out.parent} does not exist")
    for run in args.run_dirs:
        try:
            read_log(run)
        except (FileNotFoundError, ValueError) as e:
            p.fail(str(e))
    plot_runs(args.run_dirs, out, args.x)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
