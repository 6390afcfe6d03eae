"""The loop: collect a generation, tell the strategy, hand the row to the recorder.

``Trainer.from_config`` is the one start recipe (config -> env info -> resolved config ->
pool -> trainer) the CLI, the tests and the benchmarks use. ``advance`` is the generation
step as a function; ``Events`` are what observers subscribe to instead of patching."""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from esjax.config import Config
from esjax.core.obstat import ObStat, obstat_mean_std, obstat_merge
from esjax.errors import NonFiniteError, StopRequested, WorkerError
from esjax.rollout.dispatch import Dispatcher, Generation, UnitSequence
from esjax.rollout.envs import EnvInfo, env_info
from esjax.rollout.transport import WorkerPool
from esjax.run.checkpoint import CheckpointStore
from esjax.run.metrics import log_row, training_returns
from esjax.run.recorder import Recorder
from esjax.run.resolve import make_pool, resolve_config
from esjax.run.state import (
    LoadedRun,
    RunState,
    build_es,
    initial_state,
    jitted_tell,
    policy_spec,
    run_keys,
)

__all__ = ["Events", "Trainer", "advance"]

EVENTS = {
    "collecting": "generation g's parameters are broadcast; collecting begins (g)",
    "dispatched": "generation g's first episodes are out to the workers (g)",
    "collected": "generation g's results are in, before the update (Generation)",
    "updated": "the state after generation g and its log row (RunState, row)",
    "checkpointed": "a checkpoint was written (its step)",
}


class Events:
    """Named events of the loop (``EVENTS``); subscribers run in order, in the loop's
    thread, with the event's arguments."""

    def __init__(self):
        self._subscribers: dict[str, list[Callable]] = {name: [] for name in EVENTS}

    def subscribe(self, name: str, fn: Callable) -> None:
        if name not in self._subscribers:
            raise ValueError(f"no event {name!r}: one of {', '.join(EVENTS)}")
        self._subscribers[name].append(fn)

    def emit(self, name: str, *args) -> None:
        for fn in self._subscribers[name]:
            fn(*args)


def advance(cfg: Config, s: RunState, gen: Generation, gen_policy, es_state, tell_info,
            seconds: float, workers: int) -> tuple[RunState, dict]:  # fmt: skip
    """The generation step: the run state after ``gen`` (collected from ``s`` with
    ``gen_policy``: the θ, ob mean, ob std the workers ran) was told to the strategy
    (giving ``es_state`` and ``tell_info``) in ``seconds``, and its log row. No I/O."""
    obstat, ob_count = _merge_statistics(s.obstat, gen)
    lengths = [r.length for unit in gen.train for r in unit]
    # The best checkpoint is judged on the periodic evaluations when they are on.
    evals = [r.ret for r in (gen.periodic if cfg.eval_every else gen.evals)]
    gen_eval = float(np.mean(evals)) if evals else math.nan
    state = RunState(
        es=es_state,
        obstat=obstat,
        generation=s.generation + 1,
        episodes=s.episodes + len(lengths),
        timesteps=s.timesteps + sum(lengths),
        env_steps=s.env_steps + gen.env_steps,
        periodic_eval_steps=s.periodic_eval_steps + sum(r.length for r in gen.periodic),
        time_elapsed=s.time_elapsed + seconds,
        best_eval=max(s.best_eval, gen_eval) if evals else s.best_eval,
        expected_length=float(np.mean(lengths)),
        gen_policy=gen_policy,
    )
    row = log_row(gen, state, tell_info, ob_count, seconds, workers, cfg.reward_shift,
                  ranks_stock(cfg, s.timesteps))  # fmt: skip
    return state, row


def ranks_stock(cfg: Config, timesteps: int) -> bool:
    """Whether a generation that starts after ``timesteps`` training steps ranks the stock
    return (no --train-reward, or past --train-reward-until)."""
    return not cfg.train_reward or past_train_phase(cfg, timesteps)


def ends_on_fall(cfg: Config, timesteps: int) -> bool:
    """Whether the training episodes of a generation that starts after ``timesteps``
    training steps end at a fall (--train-end-on-fall, before --train-reward-until)."""
    return cfg.train_end_on_fall and not past_train_phase(cfg, timesteps)


def past_train_phase(cfg: Config, timesteps: int) -> bool:
    """Whether ``timesteps`` training steps are past --train-reward-until (0: never)."""
    return 0 < cfg.train_reward_until <= timesteps


class Trainer:
    """Runs one run: its pool, its state, and its generations.

    ``cfg`` must be resolved (``esjax.run.resolve.resolve_config``; ``Trainer.from_config``
    does it); the trainer never changes it. ``pool``: any ``WorkerPool``, started by
    ``start`` (default: ``make_pool`` for ``cfg.backend``). ``events``: subscribe to
    ``EVENTS``; ``recorder``: the log, checkpoints and best-checkpoint facts.
    """

    def __init__(self, cfg: Config, pool: WorkerPool | None = None,
                 log: Callable[[str], None] = print, info: EnvInfo | None = None):  # fmt: skip
        if not cfg.envs_per_worker:
            raise ValueError("Trainer needs a resolved Config: use Trainer.from_config, or "
                             "esjax.run.resolve.resolve_config first")  # fmt: skip
        self.cfg, self.log = cfg, log
        self.info = info or env_info(cfg.env, cfg.env_kwargs)  # a caller with it passes it
        self.spec = policy_spec(cfg, self.info)
        self.num_params = self.spec.num_params
        self.es = build_es(cfg, self.num_params)
        self.state: RunState = initial_state(cfg, self.info, self.es)
        self._compiled_tell = jitted_tell(self.es)
        self.tell = self._compiled_tell  # the update; replace it to observe or alter one
        self.units = UnitSequence(
            run_keys(cfg.seed)[1], table_size=cfg.noise_table_size, num_params=self.num_params,
            eval_prob=cfg.eval_prob, mirrored=cfg.mirrored_sampling,
            calc_obstat_prob=cfg.calc_obstat_prob if cfg.observation_normalization else 0.0,
        )  # fmt: skip
        self.events = Events()
        self.recorder = Recorder(
            cfg, self.spec, functools.partial(self.events.emit, "checkpointed")
        )
        self.events.subscribe("updated", lambda state, row: self.recorder.observe(row))
        self.pool: WorkerPool = pool if pool is not None else make_pool(cfg, self.spec, log)
        self.table: Any = None  # the noise table, as a JAX array (once started)
        self._device = None  # the table's device: tell's state is committed to it
        self._warm_tell: threading.Thread | None = None
        self.warm_up_errors: list[str] = []  # what failed in a warm-up thread (also logged)
        self.stop_requested = False  # set from a signal handler; checked at safe points

    @classmethod
    def from_config(cls, cfg: Config, info: EnvInfo | None = None,
                    pool_factory: Callable[[Config, object, Callable], WorkerPool] | None = None,
                    **kwargs) -> Trainer:  # fmt: skip
        """The start recipe: ``cfg``'s env info (unless given), its derived values resolved
        (logged when auto), its pool (``pool_factory(cfg, spec, log)``, default
        ``make_pool``), the trainer (not started)."""
        info = info or env_info(cfg.env, cfg.env_kwargs)
        resolved, spec = resolve_config(cfg, info)
        log = kwargs.get("log", print)
        if resolved.envs_per_worker != cfg.envs_per_worker:
            log(f"envs per worker: auto -> {resolved.envs_per_worker}")
        if pool_factory is not None:
            kwargs["pool"] = pool_factory(resolved, spec, log)
        return cls(resolved, info=info, **kwargs)

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Start the pool's workers; the trainer reads the pool's noise table."""
        t0 = time.perf_counter()
        # The unit sampler compiles (~0.8 s) while the workers start, not while they wait
        # for their first episodes; tell compiles while the first generation runs.
        warm = threading.Thread(target=self._warm_sampler, name="esjax-warm-sampler")
        warm.start()
        try:
            self.pool.start()
        except BaseException:
            self.close()
            raise
        finally:
            warm.join()
        self.table = jax.dlpack.from_dlpack(self.pool.table)  # zero-copy, passed to jit
        self._device = next(iter(self.table.devices()))
        self._warm_tell = threading.Thread(target=self._warm_update, name="esjax-warm-tell")
        self._warm_tell.start()
        self.dispatcher = Dispatcher(self.pool)
        self._pool_counts = (self.pool.nodes_lost, self.pool.nodes_joined)
        self.startup_s = time.perf_counter() - t0
        cfg = self.cfg
        self.log(f"{len(self.pool.workers())} workers x {cfg.envs_per_worker} envs of {cfg.env}"
                 f" ready after {self.startup_s:.1f} s")  # fmt: skip

    def _warm_up_failed(self, what: str, e: Exception) -> None:
        """A warm-up only saves time: its failure is reported, and the real call (which
        raises the error itself if it persists) does the work."""
        line = f"warm-up of {what} failed ({type(e).__name__}: {e}); it compiles when first used"
        self.warm_up_errors.append(line)
        self.log(line)

    def _warm_sampler(self) -> None:
        """Sample the first block of units of the next generation (compiles the sampler;
        the block stays cached for the generation)."""
        try:
            self.units.episodes(self.state.generation, 0)
        except Exception as e:
            self._warm_up_failed("the unit sampler", e)

    def _warm_update(self) -> None:
        """Compile the jitted ``tell`` (whatever wraps or replaces ``self.tell``) for a
        generation of ``population_size`` episodes: one call on zero returns, its result
        dropped."""
        parts = len(self.units.signs)
        n = -(-self.cfg.population_size // parts)
        zeros = np.zeros((n, parts), np.float32)
        try:
            args = _pad_units(np.zeros(n, np.int32), zeros, zeros)
            # Blocks until the call has run, not only been dispatched: close() frees the
            # table once this thread is joined, and a call still reading it would crash.
            jax.block_until_ready(self._compiled_tell(self._committed_es(), self.table, *args))
        except Exception as e:
            self._warm_up_failed("the update", e)

    def _await_warm_update(self) -> None:
        if self._warm_tell is not None:
            self._warm_tell.join()
            self._warm_tell = None

    def _committed_es(self):
        """The ES state on the table's device: a state made on the host (a start, a
        resume) and one returned by ``tell`` then share one compilation of ``tell``."""
        return jax.device_put(self.state.es, self._device)

    def update_compilations(self) -> int:
        """How many programs the jitted update has compiled in this process (one per
        padded population size class, when states share a device)."""
        return self._compiled_tell._cache_size()

    def close(self) -> None:
        """Stop the workers and free the noise table (safe to call twice)."""
        self._await_warm_update()  # it reads the table: done before the table goes
        self.table = None
        self.pool.close()
        self.recorder.close()

    def budget_left(self) -> bool:
        cfg, s = self.cfg, self.state
        if cfg.max_generations and s.generation >= cfg.max_generations:
            return False
        if s.best_eval >= cfg.target_return:
            return False
        return not (cfg.max_timesteps and s.timesteps >= cfg.max_timesteps)

    def restore(self, run: LoadedRun) -> None:
        """Continue from a checkpoint read by ``esjax.run.state.load_run``."""
        self.state = run.state
        self.recorder.restore(run.meta, run.state.generation)

    # -- the loop ----------------------------------------------------------------
    def train(self, run_dir: Path, on_generation: Callable[[dict], None] | None = None) -> None:
        """Run generations until the budget is spent, recording each row in
        ``run_dir`` (log.csv, ``on_generation``) and checkpointing every
        ``snapshot_freq`` generations, after every new best evaluation, and at the end.
        A generation's row and checkpoint are written once the next generation's first
        episodes are out (the workers do not wait on the disk)."""
        recorder = self.recorder
        recorder.open(run_dir, sinks=(on_generation,) if on_generation else ())
        pending: list[tuple[RunState, dict]] = []  # the last generation, until recorded

        def finish_generation() -> None:
            if pending:
                recorder.record(*pending.pop())

        try:
            while self.budget_left():
                row = self.step(while_running=finish_generation)
                pending.append((self.state, row))
            finish_generation()
            recorder.finish(self.state)
        except (StopRequested, NonFiniteError, WorkerError):
            finish_generation()  # the row of the last completed generation, if not yet out
            recorder.finish(self.state)  # the last completed generation (finite θ)
            raise
        finally:
            recorder.close()

    def step(self, while_running: Callable[[], None] | None = None) -> dict:
        """One generation: collect → tell → ``advance``; its log row.
        ``while_running()`` runs once the generation's first episodes are out.

        The state is replaced only at the end, so an exception leaves it as it was."""
        if self.stop_requested:
            raise StopRequested
        cfg, s = self.cfg, self.state
        t0 = time.perf_counter()
        gen_policy = (np.asarray(s.theta), *obstat_mean_std(s.obstat, cfg.obs_std_floor))
        self.pool.broadcast_params(s.generation, *gen_policy, self._sigma())
        n_eval = self.periodic_evals(s.generation)
        self.events.emit("collecting", s.generation)

        def dispatched() -> None:
            self.events.emit("dispatched", s.generation)
            if while_running is not None:
                while_running()

        gen = self.dispatcher.collect(
            s.generation,
            self.units.with_evals(s.generation, n_eval, ends_on_fall(cfg, s.timesteps)),
            min_episodes=cfg.population_size, min_timesteps=cfg.timesteps_per_gen,
            expected_length=s.expected_length, should_stop=lambda: self.stop_requested,
            eval_units=n_eval, while_running=dispatched,
        )  # fmt: skip
        self.events.emit("collected", gen)
        es_state, tell_info = self.update(gen)
        state, row = advance(cfg, s, gen, gen_policy, es_state, tell_info,
                             time.perf_counter() - t0, len(self.pool.workers()))  # fmt: skip
        lost, joined = self.pool.nodes_lost, self.pool.nodes_joined
        row["NodesLost"] = lost - self._pool_counts[0]
        row["NodesJoined"] = joined - self._pool_counts[1]
        self._pool_counts = (lost, joined)
        self.state = state
        self.events.emit("updated", state, row)
        return row

    def _sigma(self):
        """The perturbation scale of the current state, for the workers: a float, or
        PGPE's σ (P,) float32 (it travels with θ, once per generation)."""
        sigma = self.es.sigma(self.state.es)
        return float(sigma) if np.ndim(sigma) == 0 else np.asarray(sigma, np.float32)

    def periodic_evals(self, generation: int) -> int:
        """Evaluation episodes of θ that ``generation`` runs (--eval-every, --eval-episodes)."""
        every = self.cfg.eval_every
        return self.cfg.eval_episodes if every and generation % every == 0 else 0

    def update(self, gen: Generation):
        """ES ``tell`` on the generation's returns; NonFiniteError if θ would stop being
        finite (the state keeps the last finite θ)."""
        unit_offsets = np.array([unit[0].episode.offset for unit in gen.train], np.int32)
        # Rank by the training return (--train-reward, --reward-shift); the log keeps the
        # env's own returns beside it.
        stock = ranks_stock(self.cfg, self.state.timesteps)
        returns = np.array(training_returns(gen, self.cfg.reward_shift, stock), np.float32)
        sign_returns = np.array([[r.sign_ret for r in unit] for unit in gen.train], np.float32)
        self._await_warm_update()  # its compilation is this call's
        es_state, info = self.tell(
            self._committed_es(), self.table, *_pad_units(unit_offsets, returns, sign_returns)
        )
        if not np.isfinite(np.asarray(es_state.theta)).all():
            raise NonFiniteError(
                f"theta became non-finite in generation {self.state.generation}: lower "
                "--learning-rate or --noise-stdev"
            )
        return es_state, info

    def save(self, store: CheckpointStore) -> None:
        """Checkpoint the current state into ``store`` (the recorder's ``save``)."""
        self.recorder.save(self.state, store)


def _merge_statistics(obstat: ObStat, gen: Generation) -> tuple[ObStat, int]:
    """Add the statistics the generation's training rollouts gathered, in sequence
    order (evaluation rollouts gather none): (new statistics, observations added)."""
    count = 0
    for r in (r for unit in gen.train for r in unit):
        if r.ob_count and r.ob_sum is not None and r.ob_sumsq is not None:
            obstat = obstat_merge(obstat, ObStat(r.ob_sum, r.ob_sumsq, r.ob_count))
            count += r.ob_count
    return obstat, count


def _pad_units(offsets, returns, sign_returns):
    """Pad the unit axis to a power of two (>= 16) with masked rows, so jitted ``tell``
    compiles once per size class instead of once per generation."""
    n = len(offsets)
    size = max(16, 1 << max(0, n - 1).bit_length())
    pad = size - n
    mask = np.zeros((size, returns.shape[1]), bool)
    mask[:n] = True
    return (
        np.pad(offsets, (0, pad)),
        np.pad(returns, ((0, pad), (0, 0))),
        np.pad(sign_returns, ((0, pad), (0, 0))),
        mask,
    )
