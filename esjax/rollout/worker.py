"""The worker side: episodes in environment slots, stepped in lockstep.

``EpisodeRunner`` steps ``len(envs)`` environments together. One NumPy policy call per
step (``act``) serves all of them; each slot holds its own perturbed weights, built once
per episode (``perturb``). When an episode ends, the next pending episode takes its slot.
It does no I/O: it returns its messages (``esjax.rollout.messages``), and ``serve_episodes`` runs
it between a task queue and a ``send`` function, which the backends provide: a process of
``esjax.rollout.local.LocalPool`` (a pipe), an actor of ``esjax.rollout.ray_pool.RayPool``, or
``esjax.rollout.inline.InlinePool`` (in the trainer's process). ``make_runner`` is the one
bootstrap they share.

This is the hot path: NumPy inference (``esjax.core.policy.policy_apply_np``), measured faster
than a jitted JAX call at these batch sizes. A row's action depends only on its own
observation and weights, never on its slot or on the other rows of the batch
(tests/rollout/test_worker.py), and an environment's episode only on its seed and actions
(esjax.rollout.envs), so results do not depend on the worker layout.
"""

from __future__ import annotations

import contextlib
import functools
import math
import queue
import time
from collections import deque
from typing import NamedTuple

import numpy as np

from esjax.core.noise import perturb
from esjax.core.policy import PolicySpec, policy_apply_np, unravel
from esjax.rollout.messages import (
    Aborted,
    Alive,
    Episode,
    EpisodeResult,
    Finished,
    FromWorker,
    NonFinite,
    Params,
    Run,
    Stop,
)

NOISE_BLOCK = 128  # steps of action noise drawn at once per slot: the same values as one
# draw per step (numpy fills a block in order from the same stream), fewer calls


class WorkerConfig(NamedTuple):
    """Everything a worker needs to start, besides its noise table (picklable, small)."""

    env_id: str
    spec: PolicySpec
    noise_size: int
    noise_stdev: float
    ac_noise_std: float
    envs_per_worker: int
    record_actions: bool = False  # each result carries its actions (benchmarks/replay.py)
    train_reward: tuple = ()  # --train-reward, parsed (esjax.rollout.train_reward); (): stock only
    env_kwargs: tuple[str, ...] = ()  # --env-kwarg items, for gymnasium.make


def make_runner(cfg: WorkerConfig, table: np.ndarray) -> EpisodeRunner:
    """A worker's runner: ``cfg.envs_per_worker`` envs over the noise table ``table``."""
    from esjax.rollout.envs import make_env

    envs = [make_env(cfg.env_id, kwargs=cfg.env_kwargs) for _ in range(cfg.envs_per_worker)]
    return EpisodeRunner(cfg.spec, envs, table, cfg.noise_stdev, cfg.ac_noise_std,
                         record_actions=cfg.record_actions,
                         train_reward=cfg.train_reward)  # fmt: skip


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
    return act_checked(spec, params, obs, ob_mean, ob_std, noise, noisy)[0]


def act_checked(spec, params, obs, ob_mean, ob_std, noise=None, noisy=None):
    """(``act``'s actions, whether every one of them is finite)."""
    actions = policy_apply_np(spec, params, obs, ob_mean, ob_std)
    if noise is not None:
        np.add(actions, noise, out=actions, where=True if noisy is None else noisy[:, None])
    finite = math.isfinite(np.add.reduce(actions, axis=None))  # one call, not a check each
    if not finite:  # clipping would hide a diverged policy: make it NaN, not a bound
        actions[np.isinf(actions)] = np.nan
        finite = bool(np.isfinite(actions).all())  # a finite sum that overflowed
    low, high = _bounds(spec)
    np.maximum(actions, low, out=actions)  # np.clip's values, without its Python wrapper
    return np.minimum(actions, high, out=actions), finite


class Slot:
    """The episode running in one env slot and its running totals (plain Python scalars:
    cheaper than NumPy calls at these sizes); ``env_s``: seconds in the env's reset and
    step calls."""

    __slots__ = ("episode", "rng", "ret", "train_ret", "sign_ret", "length", "env_s", "actions")

    def __init__(self, episode: Episode, rng: np.random.Generator | None, record: bool = False):
        self.episode, self.rng = episode, rng  # rng: its action noise (training only)
        self.ret = self.train_ret = self.sign_ret = self.env_s = 0.0
        self.length = 0
        self.actions: list[np.ndarray] | None = [] if record else None


class StepTimes:
    """Each lockstep step's per-slot share of the policy call and of the rest of the step
    (glue), newest last: an episode's steps are the last ``length`` of them (it took part
    in every step from its start to its end), so its totals are summed once, at its end."""

    KEEP = 1 << 16  # trimmed beyond this to the longest running episode's steps

    def __init__(self) -> None:
        self.predict: list[float] = []
        self.glue: list[float] = []

    def add(self, predict_s: float, glue_s: float) -> None:
        self.predict.append(predict_s)
        self.glue.append(glue_s)

    def of_last(self, n: int) -> tuple[tuple[float, float, float, int], float]:
        """((sum, min, max, n) of the policy shares, sum of the glue) of the last n steps."""
        if not n:
            return (0.0, np.inf, 0.0, 0), 0.0
        p = self.predict[-n:]
        return (sum(p), min(p), max(p), n), sum(self.glue[-n:])

    def trim(self, longest: int) -> None:
        """Forget all but the last ``longest`` steps once more than KEEP are held."""
        if len(self.predict) > self.KEEP:
            del self.predict[: len(self.predict) - longest]
            del self.glue[: len(self.glue) - longest]


class EpisodeRunner:
    """Runs episodes in ``envs`` (one slot each) with perturbations from ``noise``.

    ``set_params`` / ``add`` feed it; ``advance`` fills free slots and steps every active
    one once, returning the messages of what finished. Per step: one policy call for all
    slots, then ``env.step`` slot by slot; observations, their statistics and the action
    noise are arrays over the slots.
    """

    def __init__(self, spec: PolicySpec, envs: list, noise: np.ndarray, noise_stdev: float,
                 ac_noise_std: float, record_actions: bool = False,
                 train_reward: tuple = ()):  # fmt: skip
        self.spec, self.envs, self.noise = spec, envs, noise
        self.record_actions = record_actions
        from esjax.rollout.envs import stepping_env
        from esjax.rollout.train_reward import fell, step_reward_fn

        # env.step below the checking wrappers, with their episode limit kept here
        inner = [stepping_env(env) for env in envs]
        self.step_fns = [env.step for env, _ in inner]
        # --train-reward: each slot's training reward of a step (None: the stock reward)
        self.train_fns = [step_reward_fn(train_reward, env) for env, _ in inner]
        self.train_reward = bool(train_reward)
        self.inner, self.fell = [env for env, _ in inner], fell  # --train-end-on-fall
        self.limit = inner[0][1] if inner else None
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
        self.slot: list[Slot | None] = [None] * k
        self.active: list[int] = []  # slots running an episode, ascending
        self.obs = np.zeros((k, ob_dim), np.float32)  # what each slot's policy sees next
        self.calc = np.zeros(k, bool)  # the slot gathers observation statistics
        self.ob_sum = np.zeros((k, ob_dim))
        self.ob_sumsq = np.zeros((k, ob_dim))
        self.noisy = np.zeros(k, bool)  # a training episode with action noise
        self.ac_noise = np.zeros((k, NOISE_BLOCK, spec.ac_dim), np.float32)  # scaled
        self.noise_pos = np.zeros(k, np.intp)  # each slot's row in its block of noise
        self._rows = np.arange(k)
        self.step_times = StepTimes()

    @property
    def busy(self) -> bool:
        return bool(self.pending or self.active)

    def set_params(self, params: Params) -> list[FromWorker]:
        """θ, observation statistics and perturbation scale of generation ``params.gen``
        (sigma None: the ``noise_stdev`` given at start); drops episodes of older
        generations (their results could not be used): an ``Aborted`` if any."""
        self.gen = params.gen
        self.theta = np.asarray(params.theta, np.float32)
        sigma = params.sigma
        if sigma is None:
            self.sigma = self.noise_stdev
        else:
            self.sigma = sigma if np.ndim(sigma) == 0 else np.asarray(sigma, np.float32)
        self.ob_mean = np.asarray(params.ob_mean, np.float32)
        self.ob_std = np.asarray(params.ob_std, np.float32)
        stale = [k for k in self.active if self.slot[k].episode.gen < params.gen]
        steps = sum(self.slot[k].length for k in stale)
        for k in stale:
            self._clear(k)
        fresh = deque(e for e in self.pending if e.gen >= params.gen)
        n = len(stale) + len(self.pending) - len(fresh)
        self.pending = fresh
        return [Aborted(n, steps)] if n else []

    def add(self, ep: Episode) -> None:
        self.pending.append(ep)

    def advance(self) -> list[FromWorker]:
        """Start pending episodes in free slots, then one step in every active slot."""
        if self.pending and len(self.active) < len(self.envs):
            for k in range(len(self.envs)):
                if self.slot[k] is None and self.pending:
                    self._start(k, self.pending.popleft())
            self.active = [k for k, s in enumerate(self.slot) if s is not None]
        return self._step() if self.active else []

    def _start(self, k: int, ep: Episode) -> None:
        """Episode ``ep`` in slot ``k``: its weights θ + sign·σ·ε, its reset, its noise."""
        eps = self.noise[ep.offset : ep.offset + self.spec.num_params]
        flat = perturb(self.theta, eps, ep.sign, self.sigma)
        for (w_all, b_all), (w, b) in zip(self.stacked, unravel(self.spec, flat)):
            w_all[k] = w
            b_all[k] = b
        noisy = bool(self.ac_noise_std > 0 and ep.sign)
        rng = np.random.default_rng(ep.noise_seed) if noisy else None
        slot = self.slot[k] = Slot(ep, rng, self.record_actions)
        t0 = time.perf_counter()
        ob, _ = self.envs[k].reset(seed=ep.env_seed)
        slot.env_s = time.perf_counter() - t0
        self.obs[k] = ob if self.flat_obs else np.ravel(ob)
        self.noisy[k] = noisy
        if noisy:
            self._draw_noise(k)
        self.calc[k] = ep.calc_obstat
        self.ob_sum[k] = self.ob_sumsq[k] = 0.0

    def _draw_noise(self, k: int) -> None:
        """The next NOISE_BLOCK steps of slot k's action noise, scaled (float32)."""
        draw = self.slot[k].rng.standard_normal(self.ac_noise.shape[1:], np.float32)
        self.ac_noise[k] = np.float32(self.ac_noise_std) * draw
        self.noise_pos[k] = 0

    def _clear(self, k: int) -> None:
        self.slot[k] = None
        self.noisy[k] = self.calc[k] = False
        self.active = [j for j in self.active if j != k]

    def _step(self) -> list[FromWorker]:
        """One env step in every active slot, with one policy call for all of them."""
        t_start = time.perf_counter()
        noisy = self.noisy
        noise = self.ac_noise[self._rows, self.noise_pos] if noisy.any() else None
        actions, finite = act_checked(self.spec, self.stacked, self.obs, self.ob_mean,
                                      self.ob_std, noise, noisy)  # fmt: skip
        t_act = time.perf_counter() - t_start
        out = [] if finite else self._drop_nonfinite(actions)
        if self.calc.any():  # statistics of the observations the policy acted on
            rows = self.calc[:, None]
            np.add(self.ob_sum, self.obs, out=self.ob_sum, where=rows)
            np.add(self.ob_sumsq, np.square(self.obs, dtype=np.float64), out=self.ob_sumsq,
                   where=rows)  # fmt: skip
        n = max(1, len(self.active))
        done, in_envs = self._step_envs(actions)
        if noise is not None:
            self._advance_noise(done)
        # each slot's share of the policy call, and of the step's other time (glue)
        glue = time.perf_counter() - t_start - t_act - in_envs
        self.step_times.add(t_act / n, glue / n)
        for k in done:
            out.append(Finished(self._result(k)))
            self._clear(k)
        if done:
            self.step_times.trim(max((self.slot[k].length for k in self.active), default=0))
        return out

    def _drop_nonfinite(self, actions: np.ndarray) -> list[FromWorker]:
        """End the episodes whose action is not finite: a ``NonFinite`` each."""
        finite = np.isfinite(actions).all(axis=1)
        if finite[self.active].all():
            return []
        bad = [k for k in self.active if not finite[k]]
        out = [NonFinite(self.slot[k].episode) for k in bad]
        for k in bad:
            self._clear(k)
        return out

    def _step_envs(self, actions: np.ndarray) -> tuple[list[int], float]:
        """``env.step`` in each active slot; (slots whose episode ended, seconds in envs)."""
        done, in_envs = [], 0.0
        steps, obs, slots, limit = self.step_fns, self.obs, self.slot, self.limit
        flat_actions, flat_obs, clock = self.flat_actions, self.flat_obs, time.perf_counter
        train_fns = self.train_fns if self.train_reward else None
        for k in self.active:
            s = slots[k]
            a = actions[k] if flat_actions else actions[k].reshape(self.ac_shape)
            t0 = clock()
            ob, rew, terminated, truncated, info = steps[k](a)
            dt = clock() - t0
            if train_fns is not None:
                s.train_ret += train_fns[k](info, a)
            if s.actions is not None:
                s.actions.append(np.array(a, np.float32).ravel())
            s.env_s += dt
            in_envs += dt
            obs[k] = ob if flat_obs else np.ravel(ob)
            rew = float(rew)
            s.ret += rew
            s.sign_ret += (rew > 0) - (rew < 0)
            s.length += 1
            if terminated or truncated or s.length == limit:
                done.append(k)
            elif s.episode.end_on_fall and self.fell(self.inner[k]):
                done.append(k)
        return done, in_envs

    def _advance_noise(self, done: list[int]) -> None:
        """Move each noisy slot to its next row of action noise; a slot whose episode
        goes on past its block draws the next block (from its own stream)."""
        np.add(self.noise_pos, self.noisy, out=self.noise_pos)
        if self.noise_pos.max() >= NOISE_BLOCK:
            for k in np.flatnonzero(self.noise_pos >= NOISE_BLOCK).tolist():
                if k in done:
                    self.noise_pos[k] = 0  # its next episode starts its own stream
                else:
                    self._draw_noise(k)

    def _result(self, k: int) -> EpisodeResult:
        s, calc = self.slot[k], bool(self.calc[k])
        predict, glue = self.step_times.of_last(s.length)
        return EpisodeResult(
            s.episode, s.ret, s.sign_ret, s.length,
            self.ob_sum[k].copy() if calc else None, self.ob_sumsq[k].copy() if calc else None,
            s.length if calc else 0, predict, s.env_s, glue,
            None if s.actions is None else np.stack(s.actions),
            s.train_ret if self.train_reward else None,
        )  # fmt: skip


HEARTBEAT_S = 2.0  # a busy worker says something at least this often
IDLE_WAIT_S = 1.0  # an idle worker waits this long for a message per pass


def serve_episodes(runner: EpisodeRunner, tasks, send) -> None:
    """A worker's loop, whatever carries its messages: read every queued task (``tasks``:
    a ``queue.Queue``-like object of ``Params`` / ``Run`` / ``Stop``), then advance the
    episodes one step; ``send(msg)`` each message out. Returns on ``Stop``."""
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
            if isinstance(msg, Stop):
                return
            if isinstance(msg, Params):
                for m in runner.set_params(msg):
                    out(m)
            elif isinstance(msg, Run):
                runner.add(msg.episode)
        for m in runner.advance():
            out(m)
        if runner.busy and time.monotonic() - last_sent > HEARTBEAT_S:
            out(Alive())
