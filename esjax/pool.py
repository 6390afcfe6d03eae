"""Worker processes (spawn), the shared-memory noise table, and vectorized rollouts.

Each worker steps ``envs_per_worker`` environments in lockstep. One jitted, vmapped
policy call per step serves all of them; each slot holds its own perturbed weights,
built once per episode from θ and the shared noise table. When an episode ends, the
next queued episode takes its slot.

Protocol (all messages are small tuples; θ travels once per generation per worker):
  trainer -> worker: ("params", gen, theta, ob_mean, ob_std) | ("episode", Episode) | ("stop",)
  worker -> trainer: ("ready", wid) | ("result", wid, EpisodeResult) | ("aborted", wid, n)
                     | ("nonfinite", wid, Episode) | ("error", wid, traceback)
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing as mp
import os
import queue
import signal
import time
import traceback
from collections import deque
from multiprocessing import resource_tracker, shared_memory
from typing import NamedTuple

import numpy as np

from esjax.core.noise import fill_noise_table
from esjax.policy import PolicySpec

WORKER_START_TIMEOUT_S = 300.0


class WorkerError(RuntimeError):
    """A worker process failed; the message carries its traceback or exit code."""


class NonFiniteError(RuntimeError):
    """The policy produced non-finite actions or θ became non-finite."""


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
    """

    episode: Episode
    ret: float
    sign_ret: float
    length: int
    ob_sum: np.ndarray | None
    ob_sumsq: np.ndarray | None
    ob_count: int
    time_predict: tuple[float, float, float, int]


class WorkerConfig(NamedTuple):
    """Everything a worker needs to start (picklable, small)."""

    env_id: str
    spec: PolicySpec
    noise_name: str
    noise_size: int
    noise_stdev: float
    ac_noise_std: float
    envs_per_worker: int


class SharedNoiseTable:
    """The noise table in POSIX shared memory: created once, attached by name, never copied."""

    def __init__(self, size: int, seed: int | None = None, name: str | None = None):
        self.size = size
        self._owner = name is None
        if self._owner:
            self._shm = shared_memory.SharedMemory(create=True, size=4 * size)
        else:
            # Attaching must not register the segment with the resource tracker (shared
            # with the creator under spawn): only the creator may unlink it.
            register = resource_tracker.register
            resource_tracker.register = lambda *args, **kwargs: None
            try:
                self._shm = shared_memory.SharedMemory(name=name)
            finally:
                resource_tracker.register = register
        self.array = np.ndarray((size,), np.float32, buffer=self._shm.buf)
        if self._owner:
            fill_noise_table(self.array, 0 if seed is None else seed)

    @property
    def name(self) -> str:
        return self._shm.name

    def close(self) -> None:
        """Detach (and unlink if this process created it). Arrays viewing it become invalid."""
        self.array = None
        try:
            self._shm.close()
        except BufferError:  # a view is still alive; unlinking below still frees it at exit
            pass
        if self._owner:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                pass


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphaned workers)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def worker_main(wid: int, cfg: WorkerConfig, task_q, result_q) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the trainer handles Ctrl-C and stops us
    _die_with_parent()
    os.environ.setdefault(
        "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )
    try:
        _Worker(wid, cfg, task_q, result_q).run()
    except Exception:
        result_q.put(("error", wid, traceback.format_exc()))


class _Slot:
    """An episode in progress in one environment slot."""

    __slots__ = ("ep", "ret", "sign_ret", "length", "rng", "ob_sum", "ob_sumsq", "tp")

    def __init__(self, ep: Episode, ob_dim: int, ac_noise: bool):
        self.ep = ep
        self.ret = 0.0
        self.sign_ret = 0.0
        self.length = 0
        self.rng = np.random.default_rng(ep.noise_seed) if ac_noise and ep.sign else None
        self.ob_sum = np.zeros(ob_dim) if ep.calc_obstat else None
        self.ob_sumsq = np.zeros(ob_dim) if ep.calc_obstat else None
        self.tp = [0.0, np.inf, 0.0, 0]


class _Worker:
    def __init__(self, wid: int, cfg: WorkerConfig, task_q, result_q):
        import jax
        import jax.numpy as jnp

        from esjax.core.noise import get_noise
        from esjax.envs import make_env
        from esjax.policy import policy_apply, unravel

        self.wid, self.cfg, self.task_q, self.result_q = wid, cfg, task_q, result_q
        spec, k = cfg.spec, cfg.envs_per_worker
        self.noise = SharedNoiseTable(cfg.noise_size, name=cfg.noise_name)
        table = jax.dlpack.from_dlpack(self.noise.array)  # zero-copy view, an argument
        self.envs = [make_env(cfg.env_id) for _ in range(k)]
        self.ac_shape = self.envs[0].action_space.shape
        self.low = np.asarray(spec.ac_low, np.float32)
        self.high = np.asarray(spec.ac_high, np.float32)
        num_params = spec.num_params

        def set_slot(stacked, slot, theta, table, offset, scale):
            flat = theta + scale * get_noise(table, offset, num_params)
            layers = unravel(spec, flat)
            return [
                (w_all.at[slot].set(w), b_all.at[slot].set(b))
                for (w_all, b_all), (w, b) in zip(stacked, layers)
            ]

        def act(stacked, obs, ob_mean, ob_std):
            apply = functools.partial(policy_apply, spec)
            return jax.vmap(apply, in_axes=(0, 0, None, None))(stacked, obs, ob_mean, ob_std)

        self._set_slot = jax.jit(set_slot, donate_argnums=0)
        self._act = jax.jit(act)
        self._table = table
        self.stacked = [
            (jnp.zeros((k, i, o), jnp.float32), jnp.zeros((k, o), jnp.float32))
            for i, o in spec.layer_shapes
        ]
        self.theta = jnp.zeros(num_params, jnp.float32)
        self.ob_mean = jnp.zeros(spec.ob_dim, jnp.float32)
        self.ob_std = jnp.ones(spec.ob_dim, jnp.float32)
        self.obs = np.zeros((k, spec.ob_dim), np.float32)
        self.slots: list[_Slot | None] = [None] * k
        self.pending: deque[Episode] = deque()
        self.gen = -1
        # Compile both functions now, so the first generation is not timed with it.
        self.stacked = self._set_slot(self.stacked, 0, self.theta, table, 0, 0.0)
        np.asarray(self._act(self.stacked, self.obs, self.ob_mean, self.ob_std))
        self._jnp = jnp

    def run(self) -> None:
        self.result_q.put(("ready", self.wid))
        while True:
            busy = any(s is not None for s in self.slots) or bool(self.pending)
            if not self._handle_messages(block=not busy):
                return
            self._fill_slots()
            if any(s is not None for s in self.slots):
                self._step()

    def _handle_messages(self, block: bool) -> bool:
        """Read every queued message; False on stop."""
        msgs = []
        try:
            msgs.append(self.task_q.get(timeout=1.0) if block else self.task_q.get_nowait())
            while True:
                msgs.append(self.task_q.get_nowait())
        except queue.Empty:
            pass
        for msg in msgs:
            kind = msg[0]
            if kind == "stop":
                return False
            if kind == "params":
                _, gen, theta, ob_mean, ob_std = msg
                self.gen = gen
                self.theta = self._jnp.asarray(theta)
                self.ob_mean = self._jnp.asarray(ob_mean)
                self.ob_std = self._jnp.asarray(ob_std)
                self._drop_stale()
            elif kind == "episode":
                self.pending.append(msg[1])
        return True

    def _drop_stale(self) -> None:
        """Abandon episodes of an older θ: their results could not be used."""
        n = 0
        for k, s in enumerate(self.slots):
            if s is not None and s.ep.gen < self.gen:
                self.slots[k] = None
                n += 1
        fresh = deque(e for e in self.pending if e.gen >= self.gen)
        n += len(self.pending) - len(fresh)
        self.pending = fresh
        if n:
            self.result_q.put(("aborted", self.wid, n))

    def _fill_slots(self) -> None:
        cfg = self.cfg
        for k in range(len(self.slots)):
            if self.slots[k] is not None or not self.pending:
                continue
            ep = self.pending.popleft()
            scale = float(ep.sign) * cfg.noise_stdev
            self.stacked = self._set_slot(
                self.stacked, k, self.theta, self._table, ep.offset, scale
            )
            ob, _ = self.envs[k].reset(seed=ep.env_seed)
            self.obs[k] = np.asarray(ob, np.float32).ravel()
            self.slots[k] = _Slot(ep, cfg.spec.ob_dim, cfg.ac_noise_std > 0)

    def _step(self) -> None:
        t0 = time.perf_counter()
        actions = np.asarray(self._act(self.stacked, self.obs, self.ob_mean, self.ob_std))
        active = [k for k, s in enumerate(self.slots) if s is not None]
        per_step = (time.perf_counter() - t0) / len(active)
        for k in active:
            s = self.slots[k]
            a = actions[k]
            if not np.isfinite(a).all():
                self.result_q.put(("nonfinite", self.wid, s.ep))
                self.slots[k] = None
                continue
            if s.rng is not None:
                a = a + self.cfg.ac_noise_std * s.rng.standard_normal(a.shape, np.float32)
            a = np.clip(a, self.low, self.high).reshape(self.ac_shape)
            if s.ob_sum is not None:
                s.ob_sum += self.obs[k]
                s.ob_sumsq += np.square(self.obs[k], dtype=np.float64)
            ob, rew, terminated, truncated, _ = self.envs[k].step(a)
            self.obs[k] = np.asarray(ob, np.float32).ravel()
            s.ret += float(rew)
            s.sign_ret += float(np.sign(rew))
            s.length += 1
            tp = s.tp
            tp[0] += per_step
            tp[1] = min(tp[1], per_step)
            tp[2] = max(tp[2], per_step)
            tp[3] += 1
            if terminated or truncated:
                self._finish(k)

    def _finish(self, k: int) -> None:
        s = self.slots[k]
        self.slots[k] = None
        res = EpisodeResult(
            s.ep,
            s.ret,
            s.sign_ret,
            s.length,
            s.ob_sum,
            s.ob_sumsq,
            s.length if s.ob_sum is not None else 0,
            tuple(s.tp),
        )
        self.result_q.put(("result", self.wid, res))


class WorkerPool:
    """Starts, feeds and stops the worker processes; nothing outlives ``close``."""

    def __init__(self, cfg: WorkerConfig, num_workers: int):
        ctx = mp.get_context("spawn")
        self.result_q = ctx.Queue()
        self.task_qs = [ctx.Queue() for _ in range(num_workers)]
        self.procs = [
            ctx.Process(
                target=worker_main,
                args=(w, cfg, self.task_qs[w], self.result_q),
                name=f"esjax-worker-{w}",
                daemon=True,
            )
            for w in range(num_workers)
        ]

    def start(self) -> None:
        """Start every worker and wait until all are ready (envs made, policy compiled)."""
        for p in self.procs:
            p.start()
        ready = set()
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while len(ready) < len(self.procs):
            msg = self.recv(timeout=max(1.0, deadline - time.monotonic()))
            if msg is None:
                raise WorkerError(f"workers did not start within {WORKER_START_TIMEOUT_S:.0f} s")
            if msg[0] == "ready":
                ready.add(msg[1])

    def broadcast_params(self, gen: int, theta, ob_mean, ob_std) -> None:
        msg = ("params", gen, np.asarray(theta, np.float32), ob_mean, ob_std)
        for q in self.task_qs:
            q.put(msg)

    def send(self, wid: int, ep: Episode) -> None:
        self.task_qs[wid].put(("episode", ep))

    def recv(self, timeout: float = 1.0):
        """Next message from any worker, None on timeout. Raises WorkerError for a
        worker's exception or death, so a failure surfaces instead of hanging."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.result_q.get(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                msg = None
            if msg is not None and msg[0] == "error":
                raise WorkerError(f"worker {msg[1]} failed:\n{msg[2].rstrip()}")
            for w, p in enumerate(self.procs):  # a dead worker's episodes never come back
                if p.exitcode is not None:
                    raise WorkerError(f"worker {w} died (exit code {p.exitcode})")
            if msg is not None:
                return msg
            if time.monotonic() >= deadline:
                return None

    def close(self) -> None:
        """Ask workers to stop, then terminate and kill any that do not."""
        for q in self.task_qs:
            try:
                q.put(("stop",))
            except (ValueError, OSError):
                pass
        deadline = time.monotonic() + 5.0
        for p in self.procs:
            if p.pid is not None:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join()
        for q in [*self.task_qs, self.result_q]:
            q.cancel_join_thread()
            q.close()
