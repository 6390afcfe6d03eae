"""Multi-seed statistics and their report: each seed's evaluation curve (read from its
log), steps to a target, the median, interquartile mean and bootstrap interval over
seeds (rliable's practice, Agarwal et al. 2021), and the summary files ``esjax.seeds``
writes (summary.md, summary.json, curves.png). The protocol is in ``esjax.seeds``."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000


def eval_curve(run_dir: Path) -> dict:
    """The periodic evaluations of a run (see the protocol), read from its log."""
    from esjax.run.metrics import read_log

    log = read_log(Path(run_dir))
    env_steps, eval_steps = log["EnvStepsSoFar"], log["PeriodicEvalStepsSoFar"]
    before = training_steps_before(log)[:-1]
    rows = [i for i, n in enumerate(log["PeriodicEvalCount"]) if n]
    return {
        "steps": [int(before[i]) for i in rows],
        "eval_mean": [log["PeriodicEvalRewMean"][i] for i in rows],
        "eval_std": [log["PeriodicEvalRewStd"][i] for i in rows],
        "eval_episodes": int(log["PeriodicEvalCount"][rows[-1]]) if rows else 0,
        "total_env_steps": int(env_steps[-1]) if env_steps else 0,
        "eval_env_steps": int(eval_steps[-1]) if eval_steps else 0,
    }


def training_steps_before(log: dict) -> list[float]:
    """Training env steps before each generation of a log (``read_log``), and after the
    last one: the env steps minus the periodic evaluations' own, one row later."""
    done = [a - b for a, b in zip(log["EnvStepsSoFar"], log["PeriodicEvalStepsSoFar"])]
    return [0.0, *done]


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
    """Per seed: best and final evaluation (and env steps to ``target``) and its curve
    (``steps``, ``eval_mean``, ``eval_std``: a report can be made again without the run);
    across seeds: ``aggregate`` of each. Runs without an evaluation are listed, not
    aggregated."""
    per_seed = []
    for r in runs:
        row = {"seed": r["seed"], "run_dir": r["run_dir"], "wall_s": r["wall_s"],
               "total_env_steps": r["total_env_steps"], "evaluations": len(r["eval_mean"]),
               "best": max(r["eval_mean"], default=math.nan),
               "final": r["eval_mean"][-1] if r["eval_mean"] else math.nan}  # fmt: skip
        if target is not None:
            row["steps_to_target"] = first_reach(r["steps"], r["eval_mean"], target)
        row["curve"] = {k: list(r[k]) for k in ("steps", "eval_mean", "eval_std") if k in r}
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


# -- the report ------------------------------------------------------------------------
def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def shown_path(run_dir: str, out: Path | None) -> str:
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
        run = shown_path(s["run_dir"], out)
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
