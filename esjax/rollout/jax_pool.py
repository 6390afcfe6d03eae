"""Episodes of a JAX-native env (``brax/NAME``) in the trainer's process, a chunk at a time.

``JaxPool`` implements ``esjax.rollout.transport.WorkerPool`` with slots ("lanes") whose
``envs_per_worker`` members run as one jitted call (``esjax.rollout.jax_rollout``): the
dispatcher hands out episodes as to any worker, each lane runs what it holds as a chunk
of exactly that many members (a short one padded with evaluations of θ whose results are
dropped) and returns one ``Finished`` per episode, so the generation's prefix,
evaluations, statistics, checkpoints and resume are the other backends'. The lanes' calls
run at once from a thread each (XLA executes them side by side on one device: on a CPU,
one lane per core), and share the one noise table.

The chunk size is fixed for a run (a member's result may change in its last bits with
the size of the batch it ran in, never with its place in it or its neighbours), so a run
repeats bit for bit on one device. The noise table lives on the device and perturbations
are read from it by offset inside the jitted call.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from esjax.core.noise import fill_noise_table
from esjax.rollout.jax_envs import make_jax_env
from esjax.rollout.jax_rollout import Members, cached_chunk_rollout
from esjax.rollout.messages import Aborted, Episode, EpisodeResult, Finished, NonFinite, Ready
from esjax.rollout.transport import Transport
from esjax.rollout.worker import WorkerConfig

NO_PREDICT_TIMES = (0.0, 0.0, 0.0, 0)  # the policy runs fused with the env: not timed apart


def default_lanes() -> int:
    """Chunks run at once when --num-workers is 0: one per CPU core this process may use
    on a CPU, one on an accelerator."""
    if jax.default_backend() != "cpu":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class JaxPool(Transport):
    """``lanes`` slots (default ``default_lanes()``), each running ``cfg.envs_per_worker``
    members per jitted call, in this process."""

    nodes_lost = nodes_joined = 0
    queue_ahead = 0  # a lane holds one chunk: the dispatcher sends none beyond it

    def __init__(self, cfg: WorkerConfig, seed: int, lanes: int = 0,
                 log: Callable[[str], None] = print, table: np.ndarray | None = None):  # fmt: skip
        super().__init__()
        self.cfg, self.seed, self.log = cfg, seed, log
        self.lanes = lanes or default_lanes()
        self.envs_per_worker = cfg.envs_per_worker
        self.table: np.ndarray | None = table  # None: ``start`` fills it from ``seed``
        self.restarts = 0
        self._device_table = None
        self._params: tuple | None = None  # (theta, sigma, ob_mean, ob_std) on the device
        self._pending: list[deque[Episode]] = [deque() for _ in range(self.lanes)]
        self._rollout = None
        self._threads = ThreadPoolExecutor(self.lanes, thread_name_prefix="esjax-lane")

    def start(self) -> None:
        t0 = time.perf_counter()
        jenv = make_jax_env(self.cfg.env_id, self.cfg.env_kwargs)
        if self.table is None:
            self.table = fill_noise_table(np.empty(self.cfg.noise_size, np.float32), self.seed)
        self._device_table = jax.device_put(jax.dlpack.from_dlpack(self.table))
        self._rollout = cached_chunk_rollout(
            jenv.env,
            jenv.episode_length,
            self.cfg.spec,
            self.cfg.ac_noise_std,
            self.cfg.train_reward,
        )
        t1 = time.perf_counter()
        # Compile now (a warm cache makes it quick), not inside the first generation.
        spec = self.cfg.spec
        zeros = np.zeros(spec.ob_dim, np.float32)
        self._run(np.zeros(spec.num_params, np.float32), np.float32(self.cfg.noise_stdev),
                  zeros, zeros + 1, [])  # fmt: skip
        self.log(f"noise table: {self.cfg.noise_size:,} floats in {t1 - t0:.1f} s; "
                 f"{self.cfg.env_id} compiled for chunks of {self.envs_per_worker} members "
                 f"in {time.perf_counter() - t1:.1f} s on {jax.devices()[0].platform}; "
                 f"{self.lanes} chunks at once")  # fmt: skip
        self._buffer.extend((lane, Ready()) for lane in range(self.lanes))
        self.await_ready(set(range(self.lanes)))

    def workers(self) -> list[int]:
        return list(range(self.lanes))

    def broadcast_params(self, gen: int, theta, ob_mean, ob_std, sigma=None) -> None:
        sigma = self.cfg.noise_stdev if sigma is None else sigma
        # on the device once per generation, not once per chunk
        self._params = tuple(jnp.asarray(x, jnp.float32) for x in (theta, sigma, ob_mean, ob_std))
        for lane, pending in enumerate(self._pending):
            stale = sum(1 for e in pending if e.gen < gen)
            if stale:
                self._pending[lane] = deque(e for e in pending if e.gen >= gen)
                self._buffer.append((lane, Aborted(stale, 0)))

    def send(self, slot: int, ep: Episode) -> None:
        self._pending[slot].append(ep)

    def _poll(self, wait: float) -> None:
        """Run every lane's next chunk of held episodes at once (or wait, as idle workers
        would); their messages in lane order."""
        busy = [lane for lane, p in enumerate(self._pending) if p]
        if not busy or self._params is None:
            time.sleep(wait)
            return
        theta, sigma, ob_mean, ob_std = self._params
        runs = {}
        for lane in busy:
            pending, n = self._pending[lane], self.envs_per_worker
            eps = [pending.popleft() for _ in range(min(n, len(pending)))]
            runs[lane] = self._threads.submit(self._run, theta, sigma, ob_mean, ob_std, eps)
        for lane in busy:
            self._buffer.extend((lane, m) for m in runs[lane].result())

    def _run(self, theta, sigma, ob_mean, ob_std, eps: list[Episode]) -> list:
        """One jitted call on ``eps`` (padded to the chunk size): their messages."""
        assert self._rollout is not None  # started
        c = self.envs_per_worker
        pad = c - len(eps)
        members = Members(
            offset=np.array([e.offset for e in eps] + [0] * pad, np.int32),
            sign=np.array([e.sign for e in eps] + [0] * pad, np.float32),
            env_seed=np.array([e.env_seed for e in eps] + [0] * pad, np.uint32),
            noise_seed=np.array([e.noise_seed for e in eps] + [0] * pad, np.uint32),
            calc_obstat=np.array([e.calc_obstat for e in eps] + [False] * pad, bool),
        )
        t0 = time.perf_counter()
        out = jax.device_get(self._rollout(self._device_table, theta, sigma, ob_mean, ob_std,
                                           members))  # fmt: skip
        seconds = time.perf_counter() - t0
        live = max(1, int(out.length.sum()))
        msgs: list = []
        for i, ep in enumerate(eps):
            if not out.finite[i]:
                msgs.append(NonFinite(ep))
                continue
            n = int(out.length[i])
            calc = ep.calc_obstat
            msgs.append(Finished(EpisodeResult(
                ep, float(out.ret[i]), float(out.sign_ret[i]), n,
                out.ob_sum[i].astype(np.float64) if calc else None,
                out.ob_sumsq[i].astype(np.float64) if calc else None,
                n if calc else 0, NO_PREDICT_TIMES, seconds * n / live, 0.0, None,
                float(out.train_ret[i]) if self.cfg.train_reward else None,
            )))  # fmt: skip
        return msgs

    def restart(self, slot: int) -> bool:
        """Nothing runs outside this process: the slot's held episodes are handed out again
        by the dispatcher; its messages not yet returned are dropped."""
        self._purge(slot)
        self._pending[slot].clear()
        self.restarts += 1
        self._buffer.append((slot, Ready()))
        return True

    def kill_now(self) -> None:
        """Nothing runs outside this process."""

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self._pending = [deque() for _ in range(self.lanes)]
        self._device_table = None
        self.table = None


def run_noiseless(cfg: WorkerConfig, theta, ob_mean, ob_std, seeds: list[int]):
    """Returns and lengths (arrays) of noiseless episodes of θ on ``cfg``'s JAX-native env,
    episode i reset with ``seeds[i]``, in chunks of ``cfg.envs_per_worker`` members (as
    training ran its evaluations: the same returns for the same seeds)."""
    # A table of zeros (never touched: θ itself reads no noise) of the run's size: the
    # program training compiled, loaded from the compilation cache.
    zeros = np.zeros(cfg.noise_size, np.float32)
    pool = JaxPool(cfg, seed=0, lanes=1, log=lambda _: None, table=zeros)
    pool.start()
    try:
        pool.broadcast_params(0, theta, ob_mean, ob_std)
        for i, seed in enumerate(seeds):
            pool.send(0, Episode(0, i, 0, offset=0, sign=0, env_seed=seed, noise_seed=0,
                                 calc_obstat=False))  # fmt: skip
        results: dict[int, EpisodeResult] = {}
        while len(results) < len(seeds):
            got = pool.recv(timeout=1.0)
            if got is not None and isinstance(got.message, Finished):
                results[got.message.result.episode.unit] = got.message.result
            elif got is not None and isinstance(got.message, NonFinite):
                results[got.message.episode.unit] = EpisodeResult(
                    got.message.episode, float("nan"), 0.0, 0, None, None, 0,
                    NO_PREDICT_TIMES, 0.0)  # fmt: skip
    finally:
        pool.close()
    ordered = [results[i] for i in range(len(seeds))]
    return np.array([r.ret for r in ordered]), np.array([r.length for r in ordered])


def render_noiseless(
    cfg: WorkerConfig, theta, ob_mean, ob_std, seeds: list[int], size: tuple[int, int] = (480, 640)
) -> tuple[list[np.ndarray], int]:
    """(frames (H, W, 3) uint8 of noiseless episodes of θ, reset with ``seeds``, one after
    the other; frames per second) through the env's ``render(trajectory, height, width)``
    (Brax's, with MuJoCo's renderer). The episodes are stepped one at a time here, not in
    a chunk: a frame shows the same policy, not necessarily the chunk's last bits."""
    from esjax.core.policy import policy_apply, unravel
    from esjax.errors import ConfigError

    jenv = make_jax_env(cfg.env_id, cfg.env_kwargs)
    env = jenv.env
    if not hasattr(env, "render"):
        raise ConfigError(f"--video: {cfg.env_id} has no render(trajectory): drop --video")
    spec = cfg.spec
    low, high = np.asarray(spec.ac_low, np.float32), np.asarray(spec.ac_high, np.float32)
    params = unravel(spec, jnp.asarray(theta, jnp.float32))

    @jax.jit
    def step(state):
        action = policy_apply(spec, params, state.obs, ob_mean, ob_std)
        return env.step(state, jnp.clip(action, low, high))

    reset = jax.jit(env.reset)
    frames: list[np.ndarray] = []
    for seed in seeds:
        state = reset(jax.random.PRNGKey(np.uint32(seed)))
        trajectory = [state.pipeline_state]
        for _ in range(jenv.episode_length):
            state = step(state)
            trajectory.append(state.pipeline_state)
            if float(state.done):
                break
        frames += [np.asarray(f) for f in env.render(trajectory, height=size[0], width=size[1])]
    return frames, max(1, round(1.0 / float(getattr(env, "dt", 1 / 30))))
