"""Worker processes (spawn), the shared-memory noise table, and vectorized rollouts.

Each worker steps ``envs_per_worker`` environments in lockstep. One NumPy policy call
per step (``policy_apply_np``, on the worker's own thread) serves all of them; each slot
holds its own perturbed weights, built once per episode from θ and the shared noise
table. When an episode ends, the next queued episode takes its slot.

Protocol (all messages are small tuples; θ travels once per generation per worker):
  trainer -> worker: ("params", gen, theta, ob_mean, ob_std) | ("episode", Episode) | ("stop",)
  worker -> trainer: ("ready",) | ("result", EpisodeResult) | ("aborted", n)
                     | ("nonfinite", Episode) | ("error", traceback)

Every worker has its own task queue and its own result pipe. A shared result queue would
not survive a SIGKILL: a writer killed while holding the queue's write lock blocks every
other worker's results for good. A private pipe dies with its worker and reads as EOF.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import multiprocessing.connection
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
from esjax.policy import PolicySpec, policy_apply_np, unravel

WORKER_START_TIMEOUT_S = 300.0


class WorkerError(RuntimeError):
    """A worker process failed; the message carries its traceback or exit code."""


class WorkerDied(WorkerError):
    """Worker slot ``slot`` lost its process (killed, segfault); it can be restarted."""

    def __init__(self, slot: int, exitcode: int | None):
        super().__init__(f"worker {slot} died (exit code {exitcode})")
        self.slot, self.exitcode = slot, exitcode


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


# A worker's matrix products are small and its core is busy with the simulator: BLAS
# thread pools would only fight the other workers for the cores.
_BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_blas():
    """Environment for starting a worker: one BLAS thread (read when numpy loads)."""
    saved = {v: os.environ.get(v) for v in _BLAS_THREAD_VARS}
    os.environ.update({v: "1" for v in _BLAS_THREAD_VARS})
    try:
        yield
    finally:
        for v, value in saved.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value


def worker_main(cfg: WorkerConfig, task_q, conn) -> None:
    """Entry point of a worker process: tasks from ``task_q``, messages out on ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the trainer handles Ctrl-C and stops us
    _die_with_parent()
    try:
        _Worker(cfg, task_q, conn).run()
    except (BrokenPipeError, EOFError):
        pass  # the trainer is gone or closed our pipe: nothing left to report to
    except Exception:
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass


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


class _Worker:
    def __init__(self, cfg: WorkerConfig, task_q, conn):
        from esjax.envs import make_env

        self.cfg, self.task_q, self.conn = cfg, task_q, conn
        spec, k = cfg.spec, cfg.envs_per_worker
        self.noise = SharedNoiseTable(cfg.noise_size, name=cfg.noise_name)
        self.envs = [make_env(cfg.env_id) for _ in range(k)]
        self.ac_shape = self.envs[0].action_space.shape
        self.low = np.asarray(spec.ac_low, np.float32)
        self.high = np.asarray(spec.ac_high, np.float32)
        # Per-slot weights [(W (k, in, out), b (k, out))], rebuilt one slot per episode.
        self.stacked = [
            (np.zeros((k, i, o), np.float32), np.zeros((k, o), np.float32))
            for i, o in spec.layer_shapes
        ]
        self.theta = np.zeros(spec.num_params, np.float32)
        self.ob_mean = np.zeros(spec.ob_dim, np.float32)
        self.ob_std = np.ones(spec.ob_dim, np.float32)
        self.obs = np.zeros((k, spec.ob_dim), np.float32)
        self.slots: list[_Slot | None] = [None] * k
        self.pending: deque[Episode] = deque()
        self.gen = -1

    def run(self) -> None:
        self.conn.send(("ready",))
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
        if not block and self.task_q.empty():  # one poll(2); cheaper than a failed get
            return True
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
                self.theta = np.asarray(theta, np.float32)
                self.ob_mean = np.asarray(ob_mean, np.float32)
                self.ob_std = np.asarray(ob_std, np.float32)
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
            self.conn.send(("aborted", n))

    def _set_slot(self, k: int, ep: Episode) -> None:
        """Slot k's weights := unravel(θ + sign σ ε), ε the table's rows at ep.offset."""
        spec = self.cfg.spec
        eps = self.noise.array[ep.offset : ep.offset + spec.num_params]
        flat = self.theta + np.float32(ep.sign * self.cfg.noise_stdev) * eps
        for (w_all, b_all), (w, b) in zip(self.stacked, unravel(spec, flat)):
            w_all[k] = w
            b_all[k] = b

    def _fill_slots(self) -> None:
        cfg = self.cfg
        for k in range(len(self.slots)):
            if self.slots[k] is not None or not self.pending:
                continue
            ep = self.pending.popleft()
            self._set_slot(k, ep)
            t0 = time.perf_counter()
            ob, _ = self.envs[k].reset(seed=ep.env_seed)
            self.obs[k] = np.asarray(ob, np.float32).ravel()
            self.slots[k] = s = _Slot(ep, cfg.spec.ob_dim, cfg.ac_noise_std > 0)
            s.t_env = time.perf_counter() - t0

    def _step(self) -> None:
        """One env step in every active slot, with one policy call for all of them."""
        t0 = time.perf_counter()
        actions = policy_apply_np(self.cfg.spec, self.stacked, self.obs, self.ob_mean, self.ob_std)
        active = [k for k, s in enumerate(self.slots) if s is not None]
        per_step = (time.perf_counter() - t0) / len(active)
        finite = np.isfinite(actions).all(axis=-1)
        for k in active:  # action noise (training episodes only), then one clip for all
            rng = self.slots[k].rng
            if rng is not None:
                noise = rng.standard_normal(actions.shape[-1], np.float32)
                actions[k] += self.cfg.ac_noise_std * noise
        np.clip(actions, self.low, self.high, out=actions)
        for k in active:
            s = self.slots[k]
            if not finite[k]:
                self.conn.send(("nonfinite", s.ep))
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
            s.t_env,
        )
        self.conn.send(("result", res))


class WorkerPool:
    """Starts, feeds, restarts and stops the worker processes; nothing outlives ``close``.

    Slots 0..n-1 are stable. Each process behind a slot has its own task queue and result
    pipe, both replaced with the process, so nothing a dead process sent can be mistaken
    for its replacement's work.
    """

    MAX_CONSECUTIVE_RESTARTS = 3

    def __init__(self, cfg: WorkerConfig, num_workers: int):
        self._ctx = mp.get_context("spawn")
        self.cfg = cfg
        self.task_qs: list = [None] * num_workers
        self.conns: list = [None] * num_workers  # result pipes, trainer's (reading) end
        self.procs: list = [None] * num_workers
        self._params = None
        self.restarts = 0  # over the pool's life
        self._consecutive = [0] * num_workers  # restarts of a slot since its last result
        self._buffer: deque[tuple[int, tuple]] = deque()  # (slot, message) read, not returned
        self._dead: dict[int, int | None] = {}  # slot -> exit code, once its pipe hit EOF

    def _spawn(self, slot: int) -> None:
        q = self._ctx.Queue()
        reader, writer = self._ctx.Pipe(duplex=False)
        p = self._ctx.Process(target=worker_main, args=(self.cfg, q, writer),
                              name=f"esjax-worker-{slot}", daemon=True)  # fmt: skip
        with _single_threaded_blas():
            p.start()
        writer.close()  # the child holds the only write end: its death reads as EOF
        self.task_qs[slot], self.conns[slot], self.procs[slot] = q, reader, p
        if self._params is not None:
            q.put(self._params)

    def start(self) -> None:
        """Start every worker and wait until all are ready (noise attached, envs made)."""
        for slot in range(len(self.procs)):
            self._spawn(slot)
        ready = set()
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while len(ready) < len(self.procs):
            msg = self.recv(timeout=max(1.0, deadline - time.monotonic()))
            if msg is None:
                raise WorkerError(f"workers did not start within {WORKER_START_TIMEOUT_S:.0f} s")
            if msg[0] == "ready":
                ready.add(msg[1])

    def restart(self, slot: int, exitcode: int | None) -> None:
        """Replace the dead process of ``slot``; WorkerError if it keeps dying.

        Messages of the old process not yet returned by ``recv`` are dropped."""
        self._consecutive[slot] += 1
        if self._consecutive[slot] > self.MAX_CONSECUTIVE_RESTARTS:
            raise WorkerError(
                f"worker {slot} keeps dying (exit code {exitcode}, "
                f"{self.MAX_CONSECUTIVE_RESTARTS} restarts in a row without a result)"
            )
        self._buffer = deque(m for m in self._buffer if m[0] != slot)
        self._dead.pop(slot, None)
        old_q = self.task_qs[slot]
        old_q.cancel_join_thread()
        old_q.close()
        self.conns[slot].close()
        self.procs[slot].kill()  # if it is not dead yet (a hung worker), it is now
        self.procs[slot].join(timeout=5.0)
        self.restarts += 1
        self._spawn(slot)

    def broadcast_params(self, gen: int, theta, ob_mean, ob_std) -> None:
        self._params = ("params", gen, np.asarray(theta, np.float32), ob_mean, ob_std)
        for q in self.task_qs:
            q.put(self._params)

    def send(self, slot: int, ep: Episode) -> None:
        self.task_qs[slot].put(("episode", ep))

    def recv(self, timeout: float = 1.0):
        """Next message from a worker as (kind, slot, *payload); None on timeout.

        Raises WorkerError for a worker's exception (with its traceback, once) and
        WorkerDied for a process that died, after every message it sent before dying has
        been returned, so a failure never hangs the trainer and no finished work is lost."""
        deadline = time.monotonic() + timeout
        while True:
            if self._buffer:
                slot, msg = self._buffer.popleft()
                if msg[0] == "error":
                    self._dead.pop(slot, None)  # reported once, with its traceback
                    raise WorkerError(f"worker {slot} failed:\n{msg[1].rstrip()}")
                if msg[0] == "result":
                    self._consecutive[slot] = 0
                return (msg[0], slot, *msg[1:])
            if self._dead:
                slot, exitcode = next(iter(self._dead.items()))
                raise WorkerDied(slot, exitcode)
            left = deadline - time.monotonic()
            self._read(max(0.0, min(0.5, left)))
            if not self._buffer and not self._dead and left <= 0:
                return None

    def _read(self, wait: float) -> None:
        """Move every message that arrives within ``wait`` seconds into the buffer, and
        note the slots whose process is gone (pipe at EOF, or an exit code)."""
        live = {self.conns[s]: s for s in range(len(self.conns)) if s not in self._dead}
        for conn in mp.connection.wait(list(live), timeout=wait):
            slot = live[conn]
            try:
                while conn.poll():
                    self._buffer.append((slot, conn.recv()))
            except (EOFError, OSError):
                self.procs[slot].join(timeout=5.0)
                self._dead[slot] = self.procs[slot].exitcode
        for slot, p in enumerate(self.procs):
            if slot not in self._dead and p.exitcode is not None and not self.conns[slot].poll():
                self._dead[slot] = p.exitcode

    def close(self) -> None:
        """Ask workers to stop, then terminate and kill any that do not."""
        for q in self.task_qs:
            try:
                q.put(("stop",))
            except (ValueError, OSError, AttributeError):
                pass
        for conn in self.conns:  # a worker blocked sending a result gets EPIPE and exits
            if conn is not None:
                conn.close()
        deadline = time.monotonic() + 5.0
        for p in self.procs:
            if p is not None and p.pid is not None:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p is None:
                continue
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
            if p.is_alive():
                p.kill()
                p.join()
        for q in self.task_qs:
            if q is not None:
                q.cancel_join_thread()
                q.close()
