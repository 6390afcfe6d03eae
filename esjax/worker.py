"""The worker side: episodes in environment slots, stepped in lockstep.

``EpisodeRunner`` steps ``len(envs)`` environments together. One NumPy policy call per
step (``act``) serves all of them; each slot holds its own perturbed weights, built once
per episode (``perturb``). When an episode ends, the next pending episode takes its slot.
It does no I/O: it returns its messages, and ``worker_main`` (a process of
``esjax.pool.LocalPool``) carries them over a pipe.

Messages, worker -> trainer (tuples; the pool adds the worker's slot after the kind):
  ("ready",) | ("result", EpisodeResult) | ("aborted", episodes, steps)
  | ("nonfinite", Episode) | ("alive",) (a heartbeat while busy) | ("error", traceback)
Trainer -> worker: ("params", gen, theta, ob_mean, ob_std) | ("episode", Episode) | ("stop",)

A row's action depends only on its own observation and weights, never on its slot or on
the other rows of the batch (tests/test_worker.py), and an environment's episode only on
its seed and actions (esjax.envs), so results do not depend on the worker layout.
"""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

import numpy as np

from esjax.core.noise import perturb
from esjax.policy import PolicySpec, policy_apply_np, unravel


class Episode(NamedTuple):
    """One episode to run. sign: +1 / -1 perturbation, 0 for a noiseless evaluation."""

    gen: int
    unit: int
    part: int
    offset: int
    sign: int
    env_seed: int
    noise_seed: int
    calc_obstat: bool


class EpisodeResult(NamedTuple):
    """What a finished episode reports. ob_* are None unless it gathered statistics.

    time_predict: (sum, min, max, count) of seconds of policy inference per env step.
    time_env: seconds spent inside the env's reset and step calls for this episode.
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


def act(
    spec: PolicySpec, params, obs: np.ndarray, ob_mean: np.ndarray, ob_std: np.ndarray,
    noise: np.ndarray | None = None, ac_noise_std: float = 0.0,
) -> np.ndarray:  # fmt: skip
    """Observations (K, ob_dim) -> actions (K, ac_dim) in the action bounds: the policy
    (row k with its own weights, see ``policy_apply_np``), plus ``ac_noise_std * noise``
    where ``noise`` (K, ac_dim) is given (training episodes), clipped to [low, high];
    an infinite value becomes NaN, not a bound. Also takes one observation (ob_dim,) with
    unbatched weights. float32."""
    actions = policy_apply_np(spec, params, obs, ob_mean, ob_std)
    if noise is not None:
        actions += np.float32(ac_noise_std) * noise
    overflow = np.isinf(actions)
    if overflow.any():  # clipping would hide a diverged policy: make it NaN, not a bound
        actions[overflow] = np.nan
    return np.clip(actions, np.float32(spec.ac_low), np.float32(spec.ac_high), out=actions)


class _Slot:
    """An episode in progress in one environment slot."""

    __slots__ = ("ep", "ret", "sign_ret", "length", "rng", "ob_sum", "ob_sumsq", "tp", "t_env")

    def __init__(self, ep: Episode, ob_dim: int, ac_noise: bool):
        self.ep = ep
        self.ret = 0.0
        self.sign_ret = 0.0
        self.length = 0
        self.rng = np.random.default_rng(ep.noise_seed) if ac_noise and ep.sign else None
        self.ob_sum = np.zeros(ob_dim) if ep.calc_obstat else None
        self.ob_sumsq = np.zeros(ob_dim) if ep.calc_obstat else None
        self.tp = [0.0, np.inf, 0.0, 0]
        self.t_env = 0.0

    def result(self) -> EpisodeResult:
        count = self.length if self.ob_sum is not None else 0
        return EpisodeResult(self.ep, self.ret, self.sign_ret, self.length, self.ob_sum,
                             self.ob_sumsq, count, tuple(self.tp), self.t_env)  # fmt: skip


class EpisodeRunner:
    """Runs episodes in ``envs`` (one slot each) with perturbations from ``noise``.

    ``set_params`` / ``add`` feed it; ``advance`` fills free slots and steps every active
    one once, returning the messages of what finished.
    """

    def __init__(self, spec: PolicySpec, envs: list, noise: np.ndarray, noise_stdev: float,
                 ac_noise_std: float):  # fmt: skip
        self.spec, self.envs, self.noise = spec, envs, noise
        self.noise_stdev, self.ac_noise_std = noise_stdev, ac_noise_std
        k = len(envs)
        self.ac_shape = envs[0].action_space.shape
        # Per-slot weights [(W (k, in, out), b (k, out))], rebuilt one slot per episode.
        self.stacked = [
            (np.zeros((k, i, o), np.float32), np.zeros((k, o), np.float32))
            for i, o in spec.layer_shapes
        ]
        self.theta = np.zeros(spec.num_params, np.float32)
        self.ob_mean = np.zeros(spec.ob_dim, np.float32)
        self.ob_std = np.ones(spec.ob_dim, np.float32)
        self.obs = np.zeros((k, spec.ob_dim), np.float32)
        self.ac_noise = np.zeros((k, spec.ac_dim), np.float32)
        self.slots: list[_Slot | None] = [None] * k
        self.pending: deque[Episode] = deque()
        self.gen = -1

    @property
    def busy(self) -> bool:
        return bool(self.pending) or any(s is not None for s in self.slots)

    def set_params(self, gen: int, theta, ob_mean, ob_std) -> list[tuple]:
        """θ and observation statistics of generation ``gen``; drops episodes of older
        generations (their results could not be used): an "aborted" message if any."""
        self.gen = gen
        self.theta = np.asarray(theta, np.float32)
        self.ob_mean = np.asarray(ob_mean, np.float32)
        self.ob_std = np.asarray(ob_std, np.float32)
        n = steps = 0
        for k, s in enumerate(self.slots):
            if s is not None and s.ep.gen < gen:
                self.slots[k] = None
                n += 1
                steps += s.length
        fresh = deque(e for e in self.pending if e.gen >= gen)
        n += len(self.pending) - len(fresh)
        self.pending = fresh
        return [("aborted", n, steps)] if n else []

    def add(self, ep: Episode) -> None:
        self.pending.append(ep)

    def advance(self) -> list[tuple]:
        """Start pending episodes in free slots, then one step in every active slot."""
        self._fill_slots()
        return self._step() if any(s is not None for s in self.slots) else []

    def _fill_slots(self) -> None:
        spec = self.spec
        for k in range(len(self.slots)):
            if self.slots[k] is not None or not self.pending:
                continue
            ep = self.pending.popleft()
            eps = self.noise[ep.offset : ep.offset + spec.num_params]
            flat = perturb(self.theta, eps, ep.sign, self.noise_stdev)
            for (w_all, b_all), (w, b) in zip(self.stacked, unravel(spec, flat)):
                w_all[k] = w
                b_all[k] = b
            t0 = time.perf_counter()
            ob, _ = self.envs[k].reset(seed=ep.env_seed)
            self.obs[k] = np.asarray(ob, np.float32).ravel()
            self.slots[k] = s = _Slot(ep, spec.ob_dim, self.ac_noise_std > 0)
            s.t_env = time.perf_counter() - t0

    def _step(self) -> list[tuple]:
        """One env step in every active slot, with one policy call for all of them."""
        active = [k for k, s in enumerate(self.slots) if s is not None]
        for k in active:  # action noise: training episodes only
            rng = self.slots[k].rng
            if rng is not None:
                self.ac_noise[k] = rng.standard_normal(self.spec.ac_dim, np.float32)
            else:
                self.ac_noise[k] = 0.0
        t0 = time.perf_counter()
        actions = act(self.spec, self.stacked, self.obs, self.ob_mean, self.ob_std,
                      self.ac_noise, self.ac_noise_std)  # fmt: skip
        per_step = (time.perf_counter() - t0) / len(active)
        finite = np.isfinite(actions).all(axis=-1)
        out = []
        for k in active:
            s = self.slots[k]
            if not finite[k]:
                out.append(("nonfinite", s.ep))
                self.slots[k] = None
                continue
            if s.ob_sum is not None:
                s.ob_sum += self.obs[k]
                s.ob_sumsq += np.square(self.obs[k], dtype=np.float64)
            t_step = time.perf_counter()
            ob, rew, terminated, truncated, _ = self.envs[k].step(actions[k].reshape(self.ac_shape))
            s.t_env += time.perf_counter() - t_step
            self.obs[k] = np.asarray(ob, np.float32).ravel()
            rew = float(rew)
            s.ret += rew
            s.sign_ret += (rew > 0) - (rew < 0)
            s.length += 1
            tp = s.tp
            tp[0] += per_step
            tp[1] = min(tp[1], per_step)
            tp[2] = max(tp[2], per_step)
            tp[3] += 1
            if terminated or truncated:
                self.slots[k] = None
                out.append(("result", s.result()))
        return out
