"""The local worker pool: spawned processes on this machine and the shared-memory noise
table they all read.

``LocalPool`` implements ``esjax.rollout.transport.WorkerPool``. Each process runs an
``esjax.rollout.worker.EpisodeRunner`` over ``envs_per_worker`` environments, exchanging the
messages of ``esjax.rollout.messages`` (θ travels once per generation per worker).

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
from collections.abc import Callable
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np

from esjax.core.noise import fill_noise_table
from esjax.rollout.messages import Episode, Failed, Params, Ready, Run, Stop
from esjax.rollout.transport import Transport
from esjax.rollout.worker import WorkerConfig, make_runner, serve_episodes


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
        self.array: np.ndarray | None = np.ndarray((size,), np.float32, buffer=self._shm.buf)
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


def worker_main(cfg: WorkerConfig, noise_name: str, task_q, conn) -> None:
    """Entry point of a worker process: attach the noise table ``noise_name``, make the
    envs, say Ready, then serve tasks from ``task_q``, messages out on ``conn``."""
    # The trainer handles Ctrl-C and SIGTERM (also when sent to the whole process group)
    # and stops us; if it dies, PDEATHSIG does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    try:
        noise = SharedNoiseTable(cfg.noise_size, name=noise_name)
        assert noise.array is not None
        runner = make_runner(cfg, noise.array)
        conn.send(Ready())
        serve_episodes(runner, task_q, conn.send)
    except (BrokenPipeError, EOFError):
        pass  # the trainer is gone or closed our pipe: nothing left to report to
    except Exception:
        with contextlib.suppress(OSError):
            conn.send(Failed(traceback.format_exc()))


class LocalPool(Transport):
    """Starts, feeds, restarts and stops the worker processes and their noise table;
    nothing outlives ``close``.

    Slots 0..n-1 are stable. Each process behind a slot has its own task queue and result
    pipe, both replaced with the process, so nothing a dead process sent can be mistaken
    for its replacement's work.
    """

    nodes_lost = nodes_joined = 0  # one machine

    def __init__(self, cfg: WorkerConfig, num_workers: int, seed: int,
                 log: Callable[[str], None] = print):  # fmt: skip
        super().__init__()
        self._ctx = mp.get_context("spawn")
        self.cfg, self.seed, self.log = cfg, seed, log
        self.num_workers, self.envs_per_worker = num_workers, cfg.envs_per_worker
        self.task_qs: list = [None] * num_workers
        self.conns: list = [None] * num_workers  # result pipes, trainer's (reading) end
        self.procs: list = [None] * num_workers
        self.noise: SharedNoiseTable | None = None
        self.table: np.ndarray | None = None
        self._params: Params | None = None
        self.restarts = 0  # over the pool's life

    def _spawn(self, slot: int) -> None:
        assert self.noise is not None  # started
        q = self._ctx.Queue()
        reader, writer = self._ctx.Pipe(duplex=False)
        p = self._ctx.Process(target=worker_main, args=(self.cfg, self.noise.name, q, writer),
                              name=f"esjax-worker-{slot}", daemon=True)  # fmt: skip
        with _single_threaded_blas():
            p.start()
        writer.close()  # the child holds the only write end: its death reads as EOF
        self.task_qs[slot], self.conns[slot], self.procs[slot] = q, reader, p
        if self._params is not None:
            q.put(self._params)

    def start(self) -> None:
        """Build the noise table, start every worker and wait until all are ready."""
        t0 = time.perf_counter()
        self.noise = SharedNoiseTable(self.cfg.noise_size, seed=self.seed)
        self.table = self.noise.array
        size = self.cfg.noise_size
        self.log(f"noise table: {size:,} floats ({4 * size / 1e9:.2f} GB) in "
                 f"{time.perf_counter() - t0:.1f} s; policy: {self.cfg.spec.num_params:,} "
                 "parameters")  # fmt: skip
        for slot in range(self.num_workers):
            self._spawn(slot)
        self.await_ready(set(range(self.num_workers)))

    def workers(self) -> list[int]:
        return list(range(self.num_workers))

    def restart(self, slot: int) -> bool:
        """Replace the process of ``slot`` (killing it if it still runs). Messages of the
        old process not yet returned by ``recv`` are dropped. Always True: this machine
        is still here."""
        self._purge(slot)
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
        self._params = Params(gen, np.asarray(theta, np.float32), ob_mean, ob_std, sigma)
        for q in self.task_qs:
            q.put(self._params)

    def send(self, slot: int, ep: Episode) -> None:
        self.task_qs[slot].put(Run(ep))

    def _poll(self, wait: float) -> None:
        """Move every message that arrives within ``wait`` seconds into the buffer, and
        note the slots whose process is gone (pipe at EOF, or an exit code)."""
        live = {self.conns[s]: s for s in range(len(self.conns)) if s not in self._dead}
        ready: list[Any] = mp.connection.wait(list(live), timeout=wait)  # our pipes' ends
        for conn in ready:
            slot = live[conn]
            try:
                while conn.poll():
                    self._buffer.append((slot, conn.recv()))
            except (EOFError, OSError):
                self.procs[slot].join(timeout=5.0)
                self._dead[slot] = f"exit code {self.procs[slot].exitcode}"
        for slot, p in enumerate(self.procs):
            if slot not in self._dead and p.exitcode is not None and not self.conns[slot].poll():
                self._dead[slot] = f"exit code {p.exitcode}"

    def kill_now(self) -> None:
        """Nothing to do: the workers die with this process (PR_SET_PDEATHSIG)."""

    def close(self) -> None:
        """Ask workers to stop, then terminate and kill any that do not; free the table."""
        for q in self.task_qs:
            with contextlib.suppress(ValueError, OSError, AttributeError):
                q.put(Stop())
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
        self.task_qs = self.conns = self.procs = [None] * self.num_workers
        self.table = None
        if self.noise is not None:
            self.noise.close()
            self.noise = None
