"""The worker side: episodes in environment slots, stepped in lockstep.

``EpisodeRunner`` steps ``len(envs)`` environments together. One NumPy policy call per
step (``act``) serves all of them; each slot holds its own perturbed weights, built once
per episode (``perturb``). When an episode ends, the next pending episode takes its slot.
It does no I/O: it returns its messages, and ``serve_episodes`` runs it between a task
queue and a ``send`` function, which the backends provide: a process of
``esjax.pool.LocalPool`` (a pipe), or an actor of ``esjax.ray_pool.RayPool``.

Messages, worker -> trainer (tuples; the pool adds the worker's slot after the kind):
  ("ready",) | ("result", EpisodeResult) | ("aborted", episodes, steps)
  | ("nonfinite", Episode) | ("alive",) (a heartbeat while busy) | ("error", traceback)
Trainer -> worker: ("params", gen, theta, ob_mean, ob_std, sigma) | ("episode", Episode)
  | ("stop",)   (sigma: the perturbation scale, a float or PGPE's (P,) vector)

A row's action depends only on its own observation and weights, never on its slot or on
the other rows of the batch (tests/test_worker.py), and an environment's episode only on
its seed and actions (esjax.envs), so results do not depend on the worker layout.
"""

from __future__ import annotations

import contextlib
import functools
import queue
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
    time_glue: the worker's other seconds of the steps this episode took part in (noise,
    statistics, bookkeeping), its share of each lockstep step.
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


NOISE_BLOCK = 128  # steps of action noise drawn at once per slot: the same values as one
# draw per step (numpy fills a block in order from the same stream), fewer calls


# Per worker: the slots' perturbed weights (4 bytes a parameter each, read every step)
# stay within about an L2 cache; beyond that every step streams them from memory and
# evicts the simulator's data (measured: a 256x256 policy ran slower at 8 envs than at 2).
WEIGHT_BUDGET_BYTES = 768 * 1024
MAX_ENVS_PER_WORKER = 32


def auto_envs_per_worker(num_params: int, population_size: int, timesteps_per_gen: int,
                         max_episode_steps: int | None, workers: int) -> int:  # fmt: skip
    """Envs per worker for ``--envs-per-worker auto``: enough slots for one wave of a
    generation's episodes (the more episodes per policy call, the cheaper each step's
    inference; a generation's last episodes then start with the first, not after them),
    at most as many as keep the slots' weights cache-sized, and at most 32."""
    episodes = max(population_size, -(-timesteps_per_gen // (max_episode_steps or 1000)))
    wave = -(-6 * episodes // (5 * workers))  # 1.2x: evaluation units ride along
    cache = WEIGHT_BUDGET_BYTES // (4 * num_params)
    return max(1, min(wave, cache, MAX_ENVS_PER_WORKER))


@functools.lru_cache(maxsize=64)
def _bounds(spec: PolicySpec) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(spec.ac_low, np.float32), np.asarray(spec.ac_high, np.float32)


def act(
    spec: PolicySpec, params, obs: np.ndarray, ob_mean: np.ndarray, ob_std: np.ndarray,
    noise: np.ndarray | None = None, noisy: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Observations (K, ob_dim) -> actions (K, ac_dim) in the action bounds: the policy
    (row k with its own weights, see ``policy_apply_np``), plus the action noise ``noise``
    (K, ac_dim; already scaled by --ac-noise-std) where given (training episodes; only rows
    where ``noisy`` (K,) is true, if given), clipped to [low, high]; an infinite value
    becomes NaN, not a bound. Also takes one observation (ob_dim,) with unbatched weights.
    float32."""
    actions = policy_apply_np(spec, params, obs, ob_mean, ob_std)
    if noise is not None:
        np.add(actions, noise, out=actions, where=True if noisy is None else noisy[:, None])
    overflow = np.isinf(actions)
    if overflow.any():  # clipping would hide a diverged policy: make it NaN, not a bound
        actions[overflow] = np.nan
    low, high = _bounds(spec)
    return np.clip(actions, low, high, out=actions)


class EpisodeRunner:
    """Runs episodes in ``envs`` (one slot each) with perturbations from ``noise``.

    ``set_params`` / ``add`` feed it; ``advance`` fills free slots and steps every active
    one once, returning the messages of what finished. Per step: one policy call for all
    slots, then ``env.step`` slot by slot with the per-slot bookkeeping as plain Python
    scalars (cheaper than NumPy calls at these sizes); observations, their statistics and
    the action noise are arrays over the slots.
    """

    def __init__(self, spec: PolicySpec, envs: list, noise: np.ndarray, noise_stdev: float,
                 ac_noise_std: float):  # fmt: skip
        self.spec, self.envs, self.noise = spec, envs, noise
        self.noise_stdev, self.ac_noise_std = noise_stdev, ac_noise_std
        k, ob_dim = len(envs), spec.ob_dim
        self.ac_shape = envs[0].action_space.shape
        self.flat_actions = len(self.ac_shape) == 1
        self.flat_obs = len(envs[0].observation_space.shape) == 1
        # Per-slot weights [(W (k, in, out), b (k, out))], rebuilt one slot per episode.
        self.stacked = [
            (np.zeros((k, i, o), np.float32), np.zeros((k, o), np.float32))
            for i, o in spec.layer_shapes
        ]
        self.theta = np.zeros(spec.num_params, np.float32)
        self.sigma = noise_stdev  # the perturbation scale: a float, or (P,) float32
        self.ob_mean = np.zeros(ob_dim, np.float32)
        self.ob_std = np.ones(ob_dim, np.float32)
        self.pending: deque[Episode] = deque()
        self.gen = -1
        # The episode in each slot and its running totals.
        self.episodes: list[Episode | None] = [None] * k
        self.slots: list[int] = []  # active slots, ascending
        self.obs = np.zeros((k, ob_dim), np.float32)  # what each slot's policy sees next
        self.calc = np.zeros(k, bool)  # the slot gathers observation statistics
        self.ob_sum = np.zeros((k, ob_dim))
        self.ob_sumsq = np.zeros((k, ob_dim))
        self.noisy = np.zeros(k, bool)  # a training episode with action noise
        self.rngs: list[np.random.Generator | None] = [None] * k
        self.ac_noise = np.zeros((k, NOISE_BLOCK, spec.ac_dim), np.float32)  # scaled
        self.noise_pos = [0] * k
        self.ret, self.sign_ret = [0.0] * k, [0.0] * k
        self.length = [0] * k
        self.t_env = [0.0] * k  # seconds in reset and step
        self.t_glue = [0.0] * k  # its share of the rest of each step
        self.tp = [[0.0, 0.0, 0.0] for _ in range(k)]  # inference s per step: sum, min, max
        self._rows = np.arange(k)

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.slots)

    def set_params(self, gen: int, theta, ob_mean, ob_std, sigma=None) -> list[tuple]:
        """θ and observation statistics of generation ``gen``, and the perturbation scale
        ``sigma`` (a float, or (P,) for PGPE; None: the ``noise_stdev`` given at start);
        drops episodes of older generations (their results could not be used): an
        "aborted" message if any."""
        self.gen = gen
        self.theta = np.asarray(theta, np.float32)
        if sigma is None:
            self.sigma = self.noise_stdev
        else:
            self.sigma = sigma if np.ndim(sigma) == 0 else np.asarray(sigma, np.float32)
        self.ob_mean = np.asarray(ob_mean, np.float32)
        self.ob_std = np.asarray(ob_std, np.float32)
        stale = [k for k in self.slots if self.episodes[k].gen < gen]
        steps = sum(self.length[k] for k in stale)
        for k in stale:
            self._clear(k)
        fresh = deque(e for e in self.pending if e.gen >= gen)
        n = len(stale) + len(self.pending) - len(fresh)
        self.pending = fresh
        return [("aborted", n, steps)] if n else []

    def add(self, ep: Episode) -> None:
        self.pending.append(ep)

    def advance(self) -> list[tuple]:
        """Start pending episodes in free slots, then one step in every active slot."""
        if self.pending and len(self.slots) < len(self.envs):
            self._fill_slots()
        return self._step() if self.slots else []

    def _fill_slots(self) -> None:
        spec = self.spec
        for k in range(len(self.envs)):
            if self.episodes[k] is not None:
                continue
            if not self.pending:
                break
            ep = self.pending.popleft()
            eps = self.noise[ep.offset : ep.offset + spec.num_params]
            flat = perturb(self.theta, eps, ep.sign, self.sigma)
            for (w_all, b_all), (w, b) in zip(self.stacked, unravel(spec, flat)):
                w_all[k] = w
                b_all[k] = b
            t0 = time.perf_counter()
            ob, _ = self.envs[k].reset(seed=ep.env_seed)
            self.t_env[k] = time.perf_counter() - t0
            self.obs[k] = ob if self.flat_obs else np.ravel(ob)
            self.episodes[k] = ep
            noisy = bool(self.ac_noise_std > 0 and ep.sign)
            self.noisy[k] = noisy
            self.rngs[k] = np.random.default_rng(ep.noise_seed) if noisy else None
            if noisy:
                self._draw_noise(k)
            self.calc[k] = ep.calc_obstat
            self.ob_sum[k] = self.ob_sumsq[k] = 0.0
            self.ret[k] = self.sign_ret[k] = 0.0
            self.length[k] = 0
            self.tp[k] = [0.0, np.inf, 0.0]
            self.t_glue[k] = 0.0
        self.slots = [k for k, ep in enumerate(self.episodes) if ep is not None]

    def _draw_noise(self, k: int) -> None:
        """The next NOISE_BLOCK steps of slot k's action noise, scaled (float32)."""
        draw = self.rngs[k].standard_normal(self.ac_noise.shape[1:], np.float32)
        self.ac_noise[k] = np.float32(self.ac_noise_std) * draw
        self.noise_pos[k] = 0

    def _clear(self, k: int) -> None:
        self.episodes[k] = None
        self.noisy[k] = self.calc[k] = False
        self.rngs[k] = None
        self.slots = [j for j in self.slots if j != k]

    def _step(self) -> list[tuple]:
        """One env step in every active slot, with one policy call for all of them."""
        out, slots = [], self.slots
        t_start = time.perf_counter()
        noise = self.ac_noise[self._rows, self.noise_pos]
        t0 = time.perf_counter()
        actions = act(self.spec, self.stacked, self.obs, self.ob_mean, self.ob_std, noise,
                      self.noisy)  # fmt: skip
        t_act = time.perf_counter() - t0
        per_step = t_act / len(slots)
        finite = np.isfinite(actions).all(axis=1)
        if not finite[slots].all():
            for k in [k for k in slots if not finite[k]]:
                out.append(("nonfinite", self.episodes[k]))
                self._clear(k)
            slots = self.slots
        if self.calc.any():  # statistics of the observations the policy acted on
            rows = self.calc[:, None]
            np.add(self.ob_sum, self.obs, out=self.ob_sum, where=rows)
            np.add(self.ob_sumsq, np.square(self.obs, dtype=np.float64), out=self.ob_sumsq,
                   where=rows)  # fmt: skip
        envs, obs, noisy, noise_pos = self.envs, self.obs, self.noisy, self.noise_pos
        ret, sign_ret, length, tp, t_env = self.ret, self.sign_ret, self.length, self.tp, self.t_env
        done, in_envs = [], 0.0
        for k in slots:
            a = actions[k] if self.flat_actions else actions[k].reshape(self.ac_shape)
            t0 = time.perf_counter()
            ob, rew, terminated, truncated, _ = envs[k].step(a)
            dt = time.perf_counter() - t0
            t_env[k] += dt
            in_envs += dt
            obs[k] = ob if self.flat_obs else np.ravel(ob)
            rew = float(rew)
            ret[k] += rew
            sign_ret[k] += (rew > 0) - (rew < 0)
            length[k] += 1
            p = tp[k]
            p[0] += per_step
            if per_step < p[1]:
                p[1] = per_step
            if per_step > p[2]:
                p[2] = per_step
            if terminated or truncated:
                done.append(k)
            elif noisy[k]:
                noise_pos[k] += 1
                if noise_pos[k] == NOISE_BLOCK:
                    self._draw_noise(k)
        # the step's time outside inference and the envs, shared by the slots that ran
        glue = (time.perf_counter() - t_start - t_act - in_envs) / max(1, len(slots))
        t_glue = self.t_glue
        for k in slots:
            t_glue[k] += glue
        for k in done:
            out.append(("result", self._result(k)))
            self._clear(k)
        return out

    def _result(self, k: int) -> EpisodeResult:
        calc, length = bool(self.calc[k]), self.length[k]
        return EpisodeResult(
            self.episodes[k], self.ret[k], self.sign_ret[k], length,
            self.ob_sum[k].copy() if calc else None, self.ob_sumsq[k].copy() if calc else None,
            length if calc else 0, (*self.tp[k], length), self.t_env[k], self.t_glue[k],
        )  # fmt: skip


HEARTBEAT_S = 2.0  # a busy worker says something at least this often
IDLE_WAIT_S = 1.0  # an idle worker waits this long for a message per pass


def serve_episodes(runner: EpisodeRunner, tasks, send) -> None:
    """A worker's loop, whatever carries its messages: read every queued task (``tasks``:
    a ``queue.Queue``-like object of trainer -> worker messages), then advance the
    episodes one step; ``send(msg)`` each message out. Returns on ("stop",)."""
    last_sent = time.monotonic()

    def out(msg) -> None:
        nonlocal last_sent
        send(msg)
        last_sent = time.monotonic()

    while True:
        busy = runner.busy
        msgs = []  # this pass's messages only: none when idle for IDLE_WAIT_S
        if not (busy and tasks.empty()):  # empty(): one poll(2), cheaper than a failed get
            with contextlib.suppress(queue.Empty):
                msgs.append(tasks.get(timeout=IDLE_WAIT_S) if not busy else tasks.get_nowait())
                while True:
                    msgs.append(tasks.get_nowait())
        for msg in msgs:
            if msg[0] == "stop":
                return
            if msg[0] == "params":
                for m in runner.set_params(*msg[1:]):
                    out(m)
            elif msg[0] == "episode":
                runner.add(msg[1])
        for m in runner.advance():
            out(m)
        if runner.busy and time.monotonic() - last_sent > HEARTBEAT_S:
            out(("alive",))  # long episodes: tells the stall watchdog this worker works
