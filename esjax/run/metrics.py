"""Where per-generation numbers go: the CSV log and the terminal display."""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

# The OpenAI reference's columns first, then esjax's additions.
LOG_FIELDS = (
    "Generation",
    "GenRewMean", "GenRewStd", "GenLenMean",
    "EvalGenRewardMean", "EvalGenRewardStd", "EvalGenLengthMean", "EvalGenCount",
    "EpisodesThisGen", "EpisodesSoFar", "TimestepsThisGen", "TimestepsSoFar",
    "UniqueWorkers", "ResultsSkippedFrac", "ObCount",
    "TimeElapsedThisGen", "TimeElapsed",
    "TimePredictMin", "TimePredictMax", "TimePredictMean", "TimePredictCount",
    "GenRewMax", "EvalBestSoFar", "GradNorm", "UpdateRatio", "StepsPerSec", "WorkerRestarts",
    "EnvTimeFrac", "GlueTimeFrac", "EnvStepsThisGen", "EnvStepsSoFar",
    "PeriodicEvalRewMean", "PeriodicEvalRewStd", "PeriodicEvalLenMean", "PeriodicEvalCount",
    "PeriodicEvalStepsSoFar", "NodesLost", "NodesJoined", "SigmaMean",
    "GenTrainRewMean", "GenTrainRewStd", "GenTrainRewMax",
)  # fmt: skip
# GenRew*: the env's stock return of the training episodes, always. GenTrainRew*: the
# return the strategy ranked (--train-reward, minus --reward-shift per step; without
# either, equal to GenRew*).
# SigmaMean: the mean perturbation scale after the update (--noise-stdev for openai-es and
# ars; the mean of PGPE's learned σ per parameter).
# PeriodicEval*: --eval-episodes noiseless episodes of the θ this generation started from
# (the θ that generation - 1's update produced; generation 0: the initial θ).
# NodesLost / NodesJoined: machines of a Ray cluster lost / taken in during the generation
# (WorkerRestarts counts the workers replaced on machines still there).


def training_returns(gen, reward_shift: float = 0.0, stock: bool = False) -> list[list[float]]:
    """The returns ``tell`` ranks, (units, 1 or 2): each training episode's --train-reward
    return (its stock return without one, or when ``stock``: past --train-reward-until)
    minus ``reward_shift`` per step."""
    return [[(r.ret if r.train_ret is None or stock else r.train_ret) - reward_shift * r.length
             for r in unit] for unit in gen.train]  # fmt: skip


def log_row(gen, state, tell_info, ob_count: int, dt: float, workers: int,
            reward_shift: float = 0.0, stock: bool = False) -> dict[str, Any]:  # fmt: skip
    """The log row of one generation.

    ``gen``: its ``esjax.rollout.dispatch.Generation``; ``state``: the ``esjax.run.state.RunState``
    after it (counters included); ``tell_info``: the update's ``TellInfo``; ``ob_count``:
    observations added to the statistics; ``dt``: its seconds; ``workers``: how many ran;
    ``reward_shift``, ``stock``: --reward-shift, and whether the stock return was ranked
    (GenTrainRew*: what was ranked).
    """
    returns = np.array([[r.ret for r in unit] for unit in gen.train], np.float64)
    train_returns = np.array(training_returns(gen, reward_shift, stock), np.float64)
    lengths = np.array([[r.length for r in unit] for unit in gen.train], np.int64)
    eval_rets = np.array([r.ret for r in gen.evals], np.float64)
    eval_lens = np.array([r.length for r in gen.evals], np.int64)
    periodic_rets = np.array([r.ret for r in gen.periodic], np.float64)
    periodic_lens = np.array([r.length for r in gen.periodic], np.int64)
    used = gen.used
    tp = [r.time_predict for r in used]
    tp_count = sum(x[3] for x in tp)
    nan = math.nan
    return {
        "Generation": state.generation - 1,
        "GenRewMean": float(returns.mean()),
        "GenRewStd": float(returns.std()),
        "GenLenMean": float(lengths.mean()),
        "EvalGenRewardMean": float(eval_rets.mean()) if eval_rets.size else nan,
        "EvalGenRewardStd": float(eval_rets.std()) if eval_rets.size else nan,
        "EvalGenLengthMean": float(eval_lens.mean()) if eval_lens.size else nan,
        "EvalGenCount": int(eval_rets.size),
        "EpisodesThisGen": int(returns.size),
        "EpisodesSoFar": state.episodes,
        "TimestepsThisGen": int(lengths.sum()),
        "TimestepsSoFar": state.timesteps,
        "UniqueWorkers": len(gen.workers),
        "ResultsSkippedFrac": gen.skipped / max(1, gen.skipped + len(used)),
        "ObCount": ob_count,
        "TimeElapsedThisGen": dt,
        "TimeElapsed": state.time_elapsed,
        "TimePredictMin": min((x[1] for x in tp if x[3]), default=nan),
        "TimePredictMax": max((x[2] for x in tp if x[3]), default=nan),
        "TimePredictMean": sum(x[0] for x in tp) / tp_count if tp_count else nan,
        "TimePredictCount": tp_count,
        "GenRewMax": float(returns.max()),
        "EvalBestSoFar": state.best_eval if state.best_eval > -math.inf else nan,
        "GradNorm": float(tell_info.grad_norm),
        "UpdateRatio": float(tell_info.update_ratio),
        "SigmaMean": float(tell_info.sigma_mean),
        "StepsPerSec": int(lengths.sum() + eval_lens.sum() + periodic_lens.sum()) / dt,
        "WorkerRestarts": gen.restarts,
        "EnvTimeFrac": sum(r.time_env for r in used) / (workers * dt),
        "GlueTimeFrac": sum(r.time_glue for r in used) / (workers * dt),
        "EnvStepsThisGen": gen.env_steps,
        "EnvStepsSoFar": state.env_steps,
        "PeriodicEvalRewMean": float(periodic_rets.mean()) if periodic_rets.size else nan,
        "PeriodicEvalRewStd": float(periodic_rets.std()) if periodic_rets.size else nan,
        "PeriodicEvalLenMean": float(periodic_lens.mean()) if periodic_lens.size else nan,
        "PeriodicEvalCount": int(periodic_rets.size),
        "PeriodicEvalStepsSoFar": state.periodic_eval_steps,
        "GenTrainRewMean": float(train_returns.mean()),
        "GenTrainRewStd": float(train_returns.std()),
        "GenTrainRewMax": float(train_returns.max()),
    }


class CsvLog:
    """Appends one row per generation to ``log.csv`` (header written once)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        new = not self.path.exists() or self.path.stat().st_size == 0
        fields = LOG_FIELDS
        if not new:  # a resumed run keeps its log's columns (older esjax wrote fewer)
            with open(self.path, newline="") as f:
                fields = tuple(next(csv.reader(f), LOG_FIELDS))
        self.fields = fields
        self._f = open(self.path, "a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=fields, extrasaction="ignore")
        if new:
            self._w.writeheader()
            self._f.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._w.writerow({k: row.get(k, "") for k in self.fields})
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def format_generation(row: dict[str, Any]) -> str:
    """One compact line: generation, timesteps, mean return, eval return, steps/s."""
    ev = row.get("PeriodicEvalRewMean", math.nan)
    if ev is None or math.isnan(ev):
        ev = row["EvalGenRewardMean"]
    ev_s = "    -   " if ev is None or math.isnan(ev) else f"{ev:8.1f}"
    return (
        f"gen {row['Generation']:4d} | steps {row['TimestepsSoFar']:>10,d} | "
        f"return {row['GenRewMean']:8.1f} ± {row['GenRewStd']:6.1f} | eval {ev_s} | "
        f"{row['StepsPerSec']:6.0f} steps/s"
    )


class ProgressDisplay:
    """A live bar toward the budget plus one line per generation (quiet on non-TTYs:
    the lines are still printed, the bar is not)."""

    def __init__(self, total: int, unit: str, initial: int = 0):
        self.unit, self.total, self.initial = unit, total, initial
        self.started = time.monotonic()
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit=unit,
            unit_scale=True,
            dynamic_ncols=True,
            disable=None,
            leave=False,
            file=sys.stderr,
        )

    def __call__(self, row: dict[str, Any]) -> None:
        done = row["TimestepsSoFar"] if self.unit == "steps" else row["Generation"] + 1
        line = format_generation(row) + self.time_left(done)
        self.bar.write(line, file=sys.stdout)
        sys.stdout.flush()  # one line per generation, promptly, also into a log file
        self.bar.update(max(0, min(done, self.bar.total) - self.bar.n))

    def time_left(self, done: int) -> str:
        """' | ~12 min left': the rest of the budget at this session's pace so far."""
        progress, elapsed = done - self.initial, time.monotonic() - self.started
        if progress <= 0 or not self.total or done >= self.total:
            return ""
        left = (self.total - done) * elapsed / progress
        if left >= 5400:
            return f" | ~{left / 3600:.1f} h left"
        return f" | ~{left / 60:.0f} min left" if left >= 120 else f" | ~{left:.0f} s left"

    def close(self) -> None:
        self.bar.close()


def read_log(run_dir: Path) -> dict[str, list[float]]:
    """Columns of ``run_dir/log.csv`` as float lists (empty cells -> NaN)."""
    path = run_dir / "log.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no log.csv: is it an esjax run directory?")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no generations yet")
    return {k: [float(r[k]) if r[k] not in ("", None) else math.nan for r in rows] for k in rows[0]}
