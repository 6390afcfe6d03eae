"""The local worker pool: spawned processes on this machine and the shared-memory noise
table they all read.

``LocalPool`` implements ``esjax.dispatch.WorkerPool``. Each process runs an
``esjax.worker.EpisodeRunner`` over ``envs_per_worker`` environments; the messages are
those of ``esjax.worker`` (θ travels once per generation per worker).

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
import signal
import time
import traceback
from collections import deque
from multiprocessing import resource_tracker, shared_memory
from typing import NamedTuple

import numpy as np

from esjax.core.noise import fill_noise_table
from esjax.dispatch import WorkerDied, WorkerError
from esjax.policy import PolicySpec
from esjax.worker import Episode, EpisodeRunner, serve_episodes

WORKER_START_TIMEOUT_S = 300.0


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
        _serve(cfg, task_q, conn)
    except (BrokenPipeError, EOFError):
        pass  # the trainer is gone or closed our pipe: nothing left to report to
    except Exception:
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass


def _serve(cfg: WorkerConfig, task_q, conn) -> None:
    """Attach the noise table, make the envs, say ready, then serve episodes."""
    from esjax.envs import make_env

    noise = SharedNoiseTable(cfg.noise_size, name=cfg.noise_name)
    envs = [make_env(cfg.env_id) for _ in range(cfg.envs_per_worker)]
    runner = EpisodeRunner(cfg.spec, envs, noise.array, cfg.noise_stdev, cfg.ac_noise_std)
    conn.send(("ready",))
    serve_episodes(runner, task_q, conn.send)


class LocalPool:
    """Starts, feeds, restarts and stops the worker processes; nothing outlives ``close``.

    Slots 0..n-1 are stable. Each process behind a slot has its own task queue and result
    pipe, both replaced with the process, so nothing a dead process sent can be mistaken
    for its replacement's work.
    """

    def __init__(self, cfg: WorkerConfig, num_workers: int):
        self._ctx = mp.get_context("spawn")
        self.cfg = cfg
        self.num_workers, self.envs_per_worker = num_workers, cfg.envs_per_worker
        self.task_qs: list = [None] * num_workers
        self.conns: list = [None] * num_workers  # result pipes, trainer's (reading) end
        self.procs: list = [None] * num_workers
        self._params = None
        self.restarts = 0  # over the pool's life
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

    def workers(self) -> list[int]:
        return list(range(self.num_workers))

    def restart(self, slot: int) -> bool:
        """Replace the process of ``slot`` (killing it if it still runs). Messages of the
        old process not yet returned by ``recv`` are dropped. Always True: this machine
        is still here."""
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
        return True

    def broadcast_params(self, gen: int, theta, ob_mean, ob_std, sigma=None) -> None:
        self._params = ("params", gen, np.asarray(theta, np.float32), ob_mean, ob_std, sigma)
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
