"""Where per-generation numbers go: the CSV log and the terminal display."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any

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
    "EnvTimeFrac",
)  # fmt: skip


class CsvLog:
    """Appends one row per generation to ``log.csv`` (header written once)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._f = open(self.path, "a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=LOG_FIELDS)
        if new:
            self._w.writeheader()
            self._f.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._w.writerow({k: row.get(k, "") for k in LOG_FIELDS})
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def format_generation(row: dict[str, Any]) -> str:
    """One compact line: generation, timesteps, mean return, eval return, steps/s."""
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
        self.unit = unit
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
        self.bar.write(format_generation(row), file=sys.stdout)
        sys.stdout.flush()  # one line per generation, promptly, also into a log file
        done = row["TimestepsSoFar"] if self.unit == "steps" else row["Generation"] + 1
        self.bar.update(max(0, min(done, self.bar.total) - self.bar.n))

    def close(self) -> None:
        self.bar.close()
