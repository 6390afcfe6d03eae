"""What the trainer and its workers say to each other: small typed messages.

Trainer -> worker: ``Params`` (once per generation), ``Run`` (one episode), ``Stop``.
Worker -> trainer: ``Ready``, ``Finished``, ``Aborted``, ``NonFinite``, ``Alive`` (a
heartbeat while busy), ``Failed`` (an exception, with its traceback). A pool returns
each with the slot of the worker that sent it, as ``Received``. Everything here pickles
small: an episode is 9 integers; θ travels once per generation per worker.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Episode(NamedTuple):
    """One episode to run. sign: +1 / -1 perturbation, 0 for a noiseless evaluation.
    end_on_fall: it ends at the first step whose alive term is negative (--train-end-on-fall;
    training episodes only)."""

    gen: int
    unit: int
    part: int
    offset: int
    sign: int
    env_seed: int
    noise_seed: int
    calc_obstat: bool
    end_on_fall: bool = False


class EpisodeResult(NamedTuple):
    """What a finished episode reports. ob_* are None unless it gathered statistics.

    time_predict: (sum, min, max, count) of seconds of policy inference per env step.
    time_env: seconds spent inside the env's reset and step calls for this episode.
    time_glue: the worker's other seconds of the steps this episode took part in (noise,
    statistics, bookkeeping), its share of each lockstep step.
    actions: (length, ac_dim) float32, the actions the env was stepped with, only from a
    runner that records them (benchmarks replay them); None otherwise.
    ret is always the env's stock return; train_ret the return under --train-reward.
    """

    episode: Episode
    ret: float
    sign_ret: float
    length: int
    ob_sum: np.ndarray | None
    ob_sumsq: np.ndarray | None
    ob_count: int
    time_predict: tuple[float, float, float, int]
    time_env: float
    time_glue: float = 0.0
    actions: np.ndarray | None = None
    train_ret: float | None = None  # the --train-reward return; None: the stock reward


# -- trainer -> worker ----------------------------------------------------------------
class Params(NamedTuple):
    """θ (P,) float32 and the observation statistics (ob_dim,) of generation ``gen``;
    ``sigma``: the perturbation scale, a float or PGPE's (P,) float32 (None: the one the
    worker started with). Episodes of older generations are dropped."""

    gen: int
    theta: np.ndarray
    ob_mean: np.ndarray
    ob_std: np.ndarray
    sigma: float | np.ndarray | None = None


class Run(NamedTuple):
    """Run this episode (queued behind the worker's busy env slots)."""

    episode: Episode


class Stop(NamedTuple):
    """Leave the serving loop."""


# -- worker -> trainer ----------------------------------------------------------------
class Ready(NamedTuple):
    """Started: noise table attached, envs made."""


class Finished(NamedTuple):
    result: EpisodeResult


class Aborted(NamedTuple):
    """``episodes`` of an older generation dropped, after ``steps`` env steps in all."""

    episodes: int
    steps: int


class NonFinite(NamedTuple):
    """The policy produced a non-finite action in ``episode``."""

    episode: Episode


class Alive(NamedTuple):
    """A heartbeat from a busy worker (long episodes: tells the stall watchdog it works)."""


class Failed(NamedTuple):
    """The worker raised: its traceback; it serves nothing more."""

    traceback: str


ToWorker = Params | Run | Stop
FromWorker = Ready | Finished | Aborted | NonFinite | Alive | Failed


class Received(NamedTuple):
    """A worker's message, with the slot of the worker that sent it."""

    worker: int
    message: FromWorker
