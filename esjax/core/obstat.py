"""Running observation statistics (sum, sum of squares, count), merged across workers."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

STD_FLOOR = 0.1  # the OpenAI reference's floor of the normalizing std
INIT_COUNT = 1e-2  # pseudo-count of the reference, so the first mean/std are defined
CLIP = 5.0  # normalized observations are clipped to [-CLIP, CLIP]


class ObStat(NamedTuple):
    """Sufficient statistics of observations. Shapes: sum, sumsq (ob_dim,) float64; count ()."""

    sum: np.ndarray
    sumsq: np.ndarray
    count: float


def obstat_init(ob_dim: int, eps: float = INIT_COUNT) -> ObStat:
    """Statistics with the reference's prior: sum 0, sumsq eps, count eps."""
    return ObStat(np.zeros(ob_dim), np.full(ob_dim, eps), float(eps))


def obstat_from_batch(obs: np.ndarray) -> ObStat:
    """Statistics of a batch of observations (T, ob_dim), no prior."""
    obs = np.asarray(obs, dtype=np.float64)
    return ObStat(obs.sum(axis=0), np.square(obs).sum(axis=0), float(len(obs)))


def obstat_merge(a: ObStat, b: ObStat) -> ObStat:
    """Pool two sets of statistics (order-independent up to float rounding)."""
    return ObStat(a.sum + b.sum, a.sumsq + b.sumsq, a.count + b.count)


def obstat_mean_std(s: ObStat, std_floor: float = STD_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) as float32 (ob_dim,), with std = sqrt(max(var, std_floor²)); the
    reference's floor is 0.1."""
    mean = s.sum / s.count
    var = np.maximum(s.sumsq / s.count - np.square(mean), std_floor * std_floor)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)
