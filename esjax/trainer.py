"""The one loop with side effects: collect a generation, tell ES, log, checkpoint."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from esjax.config import Config
from esjax.core.obstat import ObStat, obstat_mean_std, obstat_merge
from esjax.errors import NonFiniteError, StopRequested, WorkerError
from esjax.rollout.dispatch import Dispatcher, Generation, UnitSequence
from esjax.rollout.envs import EnvInfo, env_info
from esjax.rollout.transport import WorkerPool
from esjax.run.checkpoint import CheckpointStore, best_step_after
from esjax.run.metrics import CsvLog, log_row, training_returns
from esjax.run.resolve import make_pool, resolve_config
from esjax.run.state import (
    LoadedRun,
    RunState,
    build_es,
    checkpoint_meta,
    initial_state,
    jitted_tell,
    policy_spec,
    run_keys,
    state_to_tree,
)

__all__ = ["Trainer"]


class Trainer:
    """Runs one run: its pool, its state, its log and checkpoints.

    ``cfg`` must be resolved (``esjax.run.resolve.resolve_config``; ``Trainer.from_config``
    does it); the trainer never changes it. ``pool``: any ``WorkerPool``, started by
    ``start`` (default: ``make_pool`` for ``cfg.backend``). ``on_collected(generation)``
    sees each generation's collected results before the update.
    """

    def __init__(self, cfg: Config, pool: WorkerPool | None = None,
                 log: Callable[[str], None] = print,
                 on_collected: Callable[[Generation], None] | None = None,
                 info: EnvInfo | None = None):  # fmt: skip
        if not cfg.envs_per_worker:
            raise ValueError("Trainer needs a resolved Config: use Trainer.from_config, or "
                             "esjax.run.resolve.resolve_config first")  # fmt: skip
        self.cfg, self.log, self.on_collected = cfg, log, on_collected
        self.info = info or env_info(
            cfg.env, cfg.env_kwargs
        )  # (a caller that made the env passes it)
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
        self.gen_eval = math.nan  # mean evaluation return of the last generation
        self.best_step: int | None = None  # saved checkpoint with the best evaluation
        self.best_step_eval = -math.inf
        self.saved_step: int | None = None  # newest checkpoint on disk (saved or resumed)
        self.pool: WorkerPool = pool if pool is not None else make_pool(cfg, self.spec, log)
        self.table = None  # the noise table, as a JAX array (once started)
        self._device = None  # the table's device: tell's state is committed to it
        self._warm_tell: threading.Thread | None = None
        self.stop_requested = False  # set from a signal handler; checked at safe points

    @classmethod
    def from_config(cls, cfg: Config, **kwargs) -> Trainer:
        """A trainer for ``cfg`` with its derived values resolved (logged when auto)."""
        info = env_info(cfg.env, cfg.env_kwargs)
        resolved, _ = resolve_config(cfg, info)
        if resolved.envs_per_worker != cfg.envs_per_worker:
            kwargs.get("log", print)(f"envs per worker: auto -> {resolved.envs_per_worker}")
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

    def _warm_sampler(self) -> None:
        """Sample the first block of units of the next generation (compiles the sampler;
        the block stays cached for the generation)."""
        with contextlib.suppress(Exception):  # the real call reports any error
            self.units.episodes(self.state.generation, 0)

    def _warm_update(self) -> None:
        """Compile the jitted ``tell`` (whatever wraps or replaces ``self.tell``) for a
        generation of ``population_size`` episodes: one call on zero returns, its result
        dropped."""
        parts = len(self.units.signs)
        n = -(-self.cfg.population_size // parts)
        zeros = np.zeros((n, parts), np.float32)
        with contextlib.suppress(Exception):  # the real call reports any error
            args = _pad_units(np.zeros(n, np.int32), zeros, zeros)
            # Blocks until the call has run, not only been dispatched: close() frees the
            # table once this thread is joined, and a call still reading it would crash.
            jax.block_until_ready(self._compiled_tell(self._committed_es(), self.table, *args))

    def _await_warm_update(self) -> None:
        if self._warm_tell is not None:
            self._warm_tell.join()
            self._warm_tell = None

    def _committed_es(self):
        """The ES state on the table's device: a state made on the host (a start, a
        resume) and one returned by ``tell`` then share one compilation of ``tell``."""
        return jax.device_put(self.state.es, self._device)

    def close(self) -> None:
        """Stop the workers and free the noise table (safe to call twice)."""
        self._await_warm_update()  # it reads the table: done before the table goes
        self.table = None
        self.pool.close()

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
        eval_return, best_eval = run.meta.get("eval_return"), run.meta.get("best_eval")
        self.gen_eval = math.nan if eval_return is None else eval_return
        self.best_step = run.meta.get("best_step")
        self.best_step_eval = -math.inf if best_eval is None else best_eval
        self.saved_step = run.state.generation

    # -- the loop ----------------------------------------------------------------
    def train(self, run_dir: Path, on_generation: Callable[[dict], None] | None = None) -> None:
        """Run generations until the budget is spent, logging to ``run_dir/log.csv`` and
        checkpointing every ``snapshot_freq`` generations, after every generation whose
        evaluation beats the best so far, and at the end."""
        csv_log = CsvLog(Path(run_dir) / "log.csv")
        store = CheckpointStore(run_dir, keep=self.cfg.keep_checkpoints)
        saved = set(store.steps())

        def save() -> None:
            if self.state.generation not in saved:
                self.save(store)
                saved.add(self.state.generation)

        pending: list[dict] = []  # the last generation's row, until logged and checkpointed

        def finish_generation() -> None:
            """Log the last generation and checkpoint it if due. Runs once the next
            generation's first episodes are out (the workers do not wait on the disk),
            or after the last generation."""
            if not pending:
                return
            row = pending.pop()
            csv_log.write(row)
            if on_generation:
                on_generation(row)
            freq = self.cfg.snapshot_freq
            if (freq and self.state.generation % freq == 0) or (
                self.gen_eval > self.best_step_eval  # NaN compares False
            ):
                save()  # a new best evaluation is always kept

        try:
            while self.budget_left():
                pending.append(self.step(while_running=finish_generation))
            finish_generation()
            save()
        except (StopRequested, NonFiniteError, WorkerError):
            finish_generation()  # the row of the last completed generation, if not yet out
            save()  # the last completed generation (finite θ); workers failing leave it intact
            raise
        finally:
            csv_log.close()
            store.close()

    def step(self, while_running: Callable[[], None] | None = None) -> dict:
        """One generation: collect → tell → check → merge statistics; its log row.
        ``while_running()`` runs once the generation's first episodes are out.

        The state is replaced only at the end, so an exception leaves it as it was."""
        if self.stop_requested:
            raise StopRequested
        cfg, s = self.cfg, self.state
        t0 = time.perf_counter()
        theta = np.asarray(s.theta)
        ob_mean, ob_std = obstat_mean_std(s.obstat)
        self.pool.broadcast_params(s.generation, theta, ob_mean, ob_std, self._sigma())
        n_eval = self.periodic_evals(s.generation)
        gen = self.dispatcher.collect(
            s.generation, self.units.with_evals(s.generation, n_eval),
            min_episodes=cfg.population_size, min_timesteps=cfg.timesteps_per_gen,
            expected_length=s.expected_length, should_stop=lambda: self.stop_requested,
            eval_units=n_eval, while_running=while_running,
        )  # fmt: skip
        if self.on_collected is not None:
            self.on_collected(gen)
        es_state, tell_info = self.update(gen)
        obstat, ob_count = _merge_statistics(s.obstat, gen)
        dt = time.perf_counter() - t0
        lengths = [r.length for unit in gen.train for r in unit]
        # The best checkpoint is judged on the periodic evaluations when they are on.
        evals = [r.ret for r in (gen.periodic if cfg.eval_every else gen.evals)]
        self.gen_eval = float(np.mean(evals)) if evals else math.nan
        self.state = RunState(
            es=es_state,
            obstat=obstat,
            generation=s.generation + 1,
            episodes=s.episodes + len(lengths),
            timesteps=s.timesteps + sum(lengths),
            env_steps=s.env_steps + gen.env_steps,
            periodic_eval_steps=s.periodic_eval_steps + sum(r.length for r in gen.periodic),
            time_elapsed=s.time_elapsed + dt,
            best_eval=max(s.best_eval, self.gen_eval) if evals else s.best_eval,
            expected_length=float(np.mean(lengths)),
            gen_policy=(theta, ob_mean, ob_std),
        )
        lost, joined = self.pool.nodes_lost, self.pool.nodes_joined
        row = log_row(
            gen,
            self.state,
            tell_info,
            ob_count,
            dt,
            len(self.pool.workers()),
            self.cfg.reward_shift,
        )
        row["NodesLost"] = lost - self._pool_counts[0]
        row["NodesJoined"] = joined - self._pool_counts[1]
        self._pool_counts = (lost, joined)
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
        returns = np.array(training_returns(gen, self.cfg.reward_shift), np.float32)
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
        """Checkpoint the full state after the current generation."""
        step = self.state.generation
        best_step, best_eval = best_step_after(
            {"best_step": self.best_step, "best_eval": self.best_step_eval}, step, self.gen_eval
        )
        meta = checkpoint_meta(self.cfg, self.spec, self.state, self.gen_eval, best_step,
                               best_eval)  # fmt: skip
        store.save(step, state_to_tree(self.state), meta)  # raises: nothing changes here
        self.best_step, self.best_step_eval = best_step, best_eval
        self.saved_step = step


def _merge_statistics(obstat: ObStat, gen: Generation) -> tuple[ObStat, int]:
    """Add the statistics the generation's training rollouts gathered, in sequence
    order (evaluation rollouts gather none): (new statistics, observations added)."""
    count = 0
    for r in (r for unit in gen.train for r in unit):
        if r.ob_count:
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
