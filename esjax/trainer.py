"""The one loop with side effects: ask workers for episodes, tell ES the returns, log."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from esjax.checkpoint import CheckpointStore, best_step_after
from esjax.config import Config, ConfigError
from esjax.core.es import ESState, make_es
from esjax.core.obstat import (
    ObStat,
    obstat_init,
    obstat_mean_std,
    obstat_merge,
)
from esjax.core.schedule import UNIT_BLOCK, sample_units
from esjax.envs import EnvInfo, env_info
from esjax.metrics import CsvLog
from esjax.optim import make_optimizer
from esjax.policy import PolicySpec, policy_init
from esjax.pool import (
    Episode,
    EpisodeResult,
    NonFiniteError,
    SharedNoiseTable,
    WorkerConfig,
    WorkerDied,
    WorkerPool,
)


class StopRequested(Exception):
    """A stop signal arrived; raised only between generations' state updates."""


# Workers keep this many episodes queued beyond their env slots, so no slot waits on IPC.
QUEUE_AHEAD = 2


def policy_spec(cfg: Config, info: EnvInfo) -> PolicySpec:
    """The policy network for ``cfg`` on an environment with ``info``'s spaces."""
    return PolicySpec(
        ob_dim=info.ob_dim,
        ac_dim=info.ac_dim,
        hidden_dims=cfg.hidden_dims,
        nonlin=cfg.nonlin,
        ac_low=info.ac_low,
        ac_high=info.ac_high,
        ac_bins=cfg.ac_bins if cfg.discretize_actions else 0,
        normalize_obs=cfg.observation_normalization,
    )


@dataclass
class Generation:
    """Results of the prefix of one generation's unit sequence that the update uses."""

    train: list[list[EpisodeResult]] = field(default_factory=list)  # per unit: 1 or 2 parts
    evals: list[EpisodeResult] = field(default_factory=list)
    workers: set[int] = field(default_factory=set)
    skipped: int = 0  # episodes run or started but not used (older θ or past the prefix)
    restarts: int = 0  # worker processes replaced during the generation


@dataclass
class Totals:
    """Counters over the whole run."""

    generation: int = 0
    episodes: int = 0
    timesteps: int = 0
    time_elapsed: float = 0.0
    best_eval: float = -math.inf


class Trainer:
    """Owns the pool, the noise table and the ES state for one run directory."""

    def __init__(self, cfg: Config, log: Callable[[str], None] = print):
        self.cfg, self.log = cfg, log
        self.info = env_info(cfg.env)
        self.spec = policy_spec(cfg, self.info)
        self.num_params = self.spec.num_params
        if cfg.noise_table_size < self.num_params:
            raise ConfigError(
                f"--noise-table-size {cfg.noise_table_size:,} is smaller than the policy's "
                f"{self.num_params:,} parameters: enlarge the table or shrink --hidden-dims"
            )
        key = jax.random.PRNGKey(cfg.seed)
        key_init, self.key_units = jax.random.split(key)
        optimizer = make_optimizer(
            cfg.optimizer, cfg.learning_rate, gradient_optimizer=cfg.gradient_optimizer,
            momentum=cfg.momentum, weight_decay=cfg.weight_decay, l2coeff=cfg.l2coeff,
        )  # fmt: skip
        es = make_es(
            self.num_params, optimizer, noise_stdev=cfg.noise_stdev,
            mirrored_sampling=cfg.mirrored_sampling, fitness_shaping=cfg.fitness_shaping,
            return_proc_mode=cfg.return_proc_mode, divide_by_stdev=cfg.divide_by_stdev,
        )  # fmt: skip
        self.state: ESState = es.init(policy_init(key_init, self.spec))
        self._tell = jax.jit(es.tell)
        # Every argument traced: one compilation for the run (a static generation number
        # recompiled it every generation, for ~0.3 s while the workers waited).
        self._sample_units = jax.jit(sample_units)
        self._unit_blocks: dict[int, dict[str, np.ndarray]] = {}
        self.obstat: ObStat = obstat_init(self.info.ob_dim)
        self.totals = Totals()
        # Expected training-episode length, for dispatching no more work than needed.
        self._expected_length = float(self.info.max_episode_steps or 1000)
        # The policy the last generation ran (θ, ob mean, ob std) and its evaluation.
        self.gen_policy = (np.asarray(self.state.theta), *obstat_mean_std(self.obstat))
        self.gen_eval = math.nan
        self.best_step: int | None = None  # saved checkpoint with the best evaluation
        self.best_step_eval = -math.inf
        self.saved_step: int | None = None  # newest checkpoint on disk (saved or resumed)
        self.noise: SharedNoiseTable | None = None
        self.pool: WorkerPool | None = None
        self.stop_requested = False  # set from a signal handler; checked at safe points

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        """Create the shared noise table and start the workers."""
        cfg = self.cfg
        t0 = time.perf_counter()
        self.noise = SharedNoiseTable(cfg.noise_table_size, seed=cfg.seed)
        self.table = jax.dlpack.from_dlpack(self.noise.array)  # zero-copy, passed to jit
        self.log(
            f"noise table: {cfg.noise_table_size:,} floats ({4 * cfg.noise_table_size / 1e9:.2f}"
            f" GB) in {time.perf_counter() - t0:.1f} s; policy: {self.num_params:,} parameters"
        )
        wcfg = WorkerConfig(
            cfg.env, self.spec, self.noise.name, cfg.noise_table_size, cfg.noise_stdev,
            cfg.ac_noise_std, cfg.envs_per_worker,
        )  # fmt: skip
        self.pool = WorkerPool(wcfg, cfg.workers)
        self.pool.start()
        self.log(f"{cfg.workers} workers x {cfg.envs_per_worker} envs of {cfg.env} ready "
                 f"after {time.perf_counter() - t0:.1f} s")  # fmt: skip

    def close(self) -> None:
        """Stop the workers and free the noise table (safe to call twice)."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        if self.noise is not None:
            self.table = None
            self.noise.close()
            self.noise = None

    def budget_left(self) -> bool:
        cfg, t = self.cfg, self.totals
        if cfg.max_generations and t.generation >= cfg.max_generations:
            return False
        return not (cfg.max_timesteps and t.timesteps >= cfg.max_timesteps)

    # -- the loop ----------------------------------------------------------------
    def train(self, run_dir: Path, on_generation: Callable[[dict], None] | None = None) -> None:
        """Run generations until the budget is spent, logging to ``run_dir/log.csv`` and
        checkpointing every ``snapshot_freq`` generations, after every generation whose
        evaluation beats the best so far, and at the end."""
        csv_log = CsvLog(Path(run_dir) / "log.csv")
        store = CheckpointStore(run_dir, keep=self.cfg.keep_checkpoints)
        saved = set(store.steps())
        try:
            while self.budget_left():
                row = self.step()
                csv_log.write(row)
                if on_generation:
                    on_generation(row)
                g = self.totals.generation
                periodic = self.cfg.snapshot_freq and g % self.cfg.snapshot_freq == 0
                if periodic or self.gen_eval > self.best_step_eval:  # NaN compares False
                    self.save(store)  # a new best evaluation is always kept
                    saved.add(g)
            if self.totals.generation not in saved:
                self.save(store)
        except StopRequested:
            if self.totals.generation not in saved:
                self.save(store)  # the last completed generation
            raise
        except NonFiniteError:
            self.save(store)  # the last finite state
            raise
        finally:
            csv_log.close()
            store.close()

    def save(self, store: CheckpointStore) -> None:
        """Checkpoint the full state after the current generation."""
        step = self.totals.generation
        before = self.best_step, self.best_step_eval
        self.best_step, self.best_step_eval = best_step_after(
            {"best_step": self.best_step, "best_eval": self.best_step_eval}, step, self.gen_eval
        )
        try:
            store.save(step, self.state_tree(), self.meta())
        except Exception:
            self.best_step, self.best_step_eval = before  # that step is not on disk
            raise
        self.saved_step = step

    def meta(self) -> dict:
        """JSON side of a checkpoint: the config and what identifies this step."""
        return {
            "config": self.cfg.to_dict(),
            "generation": self.totals.generation,
            "eval_return": None if math.isnan(self.gen_eval) else self.gen_eval,
            "best_step": self.best_step,
            "best_eval": None if self.best_step is None else self.best_step_eval,
            "num_params": self.num_params,
            "ob_dim": self.info.ob_dim,
            "ac_dim": self.info.ac_dim,
        }

    def step(self) -> dict:
        """One generation: collect the prefix, update θ and the statistics; the log row.

        State changes only after the collection, so a StopRequested leaves it intact."""
        if self.stop_requested:
            raise StopRequested
        t0 = time.perf_counter()
        gen_index = self.totals.generation
        ob_mean, ob_std = obstat_mean_std(self.obstat)
        theta = np.asarray(self.state.theta)
        gen = self._collect(gen_index, theta, ob_mean, ob_std)
        self.gen_policy = (theta, ob_mean, ob_std)

        offsets = np.array([u[0].episode.offset for u in gen.train], np.int32)
        returns = np.array([[r.ret for r in u] for u in gen.train], np.float32)
        sign_returns = np.array([[r.sign_ret for r in u] for u in gen.train], np.float32)
        lengths = np.array([[r.length for r in u] for u in gen.train], np.int64)
        new_state, info = self._tell(self.state, self.table, *_pad_units(
            offsets, returns, sign_returns))  # fmt: skip
        if not np.isfinite(np.asarray(new_state.theta)).all():  # keep the last finite state
            raise NonFiniteError(
                f"theta became non-finite in generation {gen_index}: lower --learning-rate "
                "or --noise-stdev"
            )
        self.state = new_state
        ob_count = 0
        if self.cfg.observation_normalization:
            for r in (r for u in gen.train for r in u):
                if r.ob_count:
                    self.obstat = obstat_merge(
                        self.obstat, ObStat(r.ob_sum, r.ob_sumsq, r.ob_count)
                    )
                    ob_count += r.ob_count

        t = self.totals
        t.generation += 1
        t.episodes += returns.size
        t.timesteps += int(lengths.sum())
        dt = time.perf_counter() - t0
        t.time_elapsed += dt
        eval_rets = np.array([r.ret for r in gen.evals], np.float64)
        self.gen_eval = float(eval_rets.mean()) if eval_rets.size else math.nan
        if eval_rets.size:
            t.best_eval = max(t.best_eval, self.gen_eval)
        used_results = [r for u in gen.train for r in u] + gen.evals
        tp = [r.time_predict for r in used_results]
        tp_count = sum(x[3] for x in tp)
        used = len(used_results)
        return {
            "Generation": gen_index,
            "GenRewMean": float(returns.mean()),
            "GenRewStd": float(returns.std()),
            "GenLenMean": float(lengths.mean()),
            "EvalGenRewardMean": float(eval_rets.mean()) if eval_rets.size else math.nan,
            "EvalGenRewardStd": float(eval_rets.std()) if eval_rets.size else math.nan,
            "EvalGenLengthMean": (
                float(np.mean([r.length for r in gen.evals])) if gen.evals else math.nan
            ),
            "EvalGenCount": len(gen.evals),
            "EpisodesThisGen": int(returns.size),
            "EpisodesSoFar": t.episodes,
            "TimestepsThisGen": int(lengths.sum()),
            "TimestepsSoFar": t.timesteps,
            "UniqueWorkers": len(gen.workers),
            "ResultsSkippedFrac": gen.skipped / max(1, gen.skipped + used),
            "ObCount": ob_count,
            "TimeElapsedThisGen": dt,
            "TimeElapsed": t.time_elapsed,
            "TimePredictMin": min((x[1] for x in tp), default=math.nan),
            "TimePredictMax": max((x[2] for x in tp), default=math.nan),
            "TimePredictMean": sum(x[0] for x in tp) / tp_count if tp_count else math.nan,
            "TimePredictCount": tp_count,
            "GenRewMax": float(returns.max()),
            "EvalBestSoFar": t.best_eval if t.best_eval > -math.inf else math.nan,
            "GradNorm": float(info.grad_norm),
            "UpdateRatio": float(info.update_ratio),
            "StepsPerSec": int(lengths.sum() + sum(r.length for r in gen.evals)) / dt,
            "WorkerRestarts": gen.restarts,
            "EnvTimeFrac": sum(r.time_env for r in used_results) / (self.cfg.workers * dt),
        }

    def state_tree(self) -> dict:
        """Everything the next generation depends on, as arrays (no pickle)."""
        t = self.totals
        theta, mean, std = self.gen_policy
        return {
            "theta": np.asarray(self.state.theta),
            "opt_state": jax.tree.map(np.asarray, self.state.opt_state),
            "obstat": {
                "sum": np.asarray(self.obstat.sum, np.float64),
                "sumsq": np.asarray(self.obstat.sumsq, np.float64),
                "count": np.array(self.obstat.count, np.float64),
            },
            "counters": {
                "generation": np.array(t.generation, np.int64),
                "episodes": np.array(t.episodes, np.int64),
                "timesteps": np.array(t.timesteps, np.int64),
                "time_elapsed": np.array(t.time_elapsed, np.float64),
                "best_eval": np.array(t.best_eval, np.float64),
                "expected_length": np.array(self._expected_length, np.float64),
            },
            "gen_policy": {"theta": theta, "ob_mean": mean, "ob_std": std},
        }

    def check_meta(self, meta: dict) -> None:
        """ConfigError unless a checkpoint's metadata describes this run's env and policy."""
        saved = meta.get("config", {})
        for key in ("env", "hidden_dims", "discretize_actions", "ac_bins", "optimizer"):
            mine = self.cfg.to_dict()[key]
            if saved.get(key) != mine:
                raise ConfigError(
                    f"the checkpoint was written with {key}={saved.get(key)!r} but config.json "
                    f"says {mine!r}: restore config.json or start a new run"
                )
        if meta.get("num_params") != self.num_params:
            raise ConfigError(
                f"the checkpoint holds {meta.get('num_params')} parameters, this policy "
                f"{self.num_params}: restore config.json or start a new run"
            )

    def restore(self, tree: dict, meta: dict) -> None:
        """Continue from a checkpoint written by ``save`` (see ``state_tree``)."""
        self.state = ESState(
            jax.numpy.asarray(tree["theta"]),
            jax.tree.map(jax.numpy.asarray, tree["opt_state"]),
        )
        o = tree["obstat"]
        self.obstat = ObStat(o["sum"], o["sumsq"], float(o["count"]))
        c = tree["counters"]
        self.totals = Totals(
            generation=int(c["generation"]), episodes=int(c["episodes"]),
            timesteps=int(c["timesteps"]), time_elapsed=float(c["time_elapsed"]),
            best_eval=float(c["best_eval"]),
        )  # fmt: skip
        self._expected_length = float(c["expected_length"])
        p = tree["gen_policy"]
        self.gen_policy = (p["theta"], p["ob_mean"], p["ob_std"])
        self.gen_eval = math.nan if meta.get("eval_return") is None else meta["eval_return"]
        self.best_step = meta.get("best_step")
        self.saved_step = self.totals.generation
        self.best_step_eval = -math.inf if meta.get("best_eval") is None else meta["best_eval"]

    # -- collecting one generation -----------------------------------------------
    def _units(self, gen: int, unit: int) -> dict[str, np.ndarray]:
        """Metadata of ``unit`` (see core.schedule), cached per block of units."""
        block, i = divmod(unit, UNIT_BLOCK)
        key = (gen, block)
        if key not in self._unit_blocks:
            cfg = self.cfg
            units = self._sample_units(
                self.key_units, gen, block, cfg.noise_table_size, self.num_params,
                cfg.eval_prob, cfg.calc_obstat_prob if cfg.observation_normalization else 0.0,
            )  # fmt: skip
            self._unit_blocks = {key: {k: np.asarray(v) for k, v in units._asdict().items()}}
        b = self._unit_blocks[key]
        return {k: v[i] for k, v in b.items()}

    def _episodes_of(self, gen: int, unit: int) -> list[Episode]:
        u = self._units(gen, unit)
        common = dict(
            gen=gen, unit=unit, offset=int(u["offset"]), env_seed=int(u["env_seed"]),
            noise_seed=int(u["noise_seed"]), calc_obstat=bool(u["calc_obstat"]),
        )  # fmt: skip
        if u["is_eval"]:
            return [Episode(part=0, sign=0, **common)]
        signs = (1, -1) if self.cfg.mirrored_sampling else (1,)
        return [Episode(part=p, sign=s, **common) for p, s in enumerate(signs)]

    def _collect(self, gen: int, theta, ob_mean, ob_std) -> Generation:
        """Hand out the generation's units in sequence order until a prefix of complete
        units meets both minimums.

        Units go out only while the episodes finished or in flight are projected to fall
        short of the minimums (in-flight episodes counted at the last generation's mean
        length), so little work is thrown away at the generation's end; a worker's slots
        stay filled as long as work is needed, and no worker sits idle while the
        generation is incomplete.
        """
        cfg, pool = self.cfg, self.pool
        pool.broadcast_params(gen, theta, ob_mean, ob_std)
        capacity = cfg.envs_per_worker + QUEUE_AHEAD
        outstanding = [0] * cfg.workers
        assigned: list[dict[tuple[int, int], Episode]] = [{} for _ in range(cfg.workers)]
        to_send: deque[Episode] = deque()
        parts: dict[int, int] = {}  # unit -> number of episodes
        done: dict[tuple[int, int], tuple[int, EpisodeResult]] = {}
        next_unit = 0
        in_flight = done_eps = done_steps = 0  # training episodes of this generation
        out = Generation()

        def needed() -> bool:
            projected_steps = done_steps + in_flight * self._expected_length
            return (
                done_eps + in_flight < cfg.population_size
                or projected_steps < cfg.timesteps_per_gen
            )

        def top_up() -> None:
            nonlocal next_unit, in_flight
            for w in range(cfg.workers):
                while outstanding[w] < capacity and (to_send or needed() or not outstanding[w]):
                    if not to_send:
                        eps = self._episodes_of(gen, next_unit)
                        parts[next_unit] = len(eps)
                        to_send.extend(eps)
                        next_unit += 1
                    ep = to_send.popleft()
                    pool.send(w, ep)
                    assigned[w][(ep.unit, ep.part)] = ep
                    outstanding[w] += 1
                    in_flight += ep.sign != 0

        def replace_worker(dead: WorkerDied) -> None:
            """Restart the slot and hand its unfinished episodes out again, first, in
            sequence order (results are keyed by (unit, part): none is counted twice)."""
            nonlocal in_flight
            w = dead.slot
            pool.restart(w, dead.exitcode)
            lost = sorted(assigned[w].values(), key=lambda e: (e.unit, e.part))
            to_send.extendleft(reversed(lost))
            in_flight -= sum(e.sign != 0 for e in lost)
            assigned[w].clear()
            outstanding[w] = 0
            out.restarts += 1

        top_up()
        prefix, n_eps, n_steps = 0, 0, 0
        while n_eps < cfg.population_size or n_steps < cfg.timesteps_per_gen:
            if self.stop_requested:
                raise StopRequested
            try:
                msg = pool.recv(timeout=0.5)
            except WorkerDied as dead:
                replace_worker(dead)
                top_up()
                continue
            if msg is None:
                continue
            kind, w = msg[0], msg[1]
            if kind == "aborted":
                out.skipped += msg[2]
                continue
            if kind == "nonfinite":
                raise NonFiniteError(
                    f"the policy produced a non-finite action in generation {gen}: lower "
                    "--learning-rate or --noise-stdev, or check the environment's observations"
                )
            if kind != "result":
                continue
            res: EpisodeResult = msg[2]
            key = (res.episode.unit, res.episode.part)
            if res.episode.gen != gen or key not in assigned[w] or key in done:
                out.skipped += 1
                continue
            del assigned[w][key]
            outstanding[w] -= 1
            if res.episode.sign != 0:
                in_flight -= 1
                done_eps += 1
                done_steps += res.length
            done[key] = (w, res)
            while (n_eps < cfg.population_size or n_steps < cfg.timesteps_per_gen) and (
                prefix < next_unit and all((prefix, p) in done for p in range(parts[prefix]))
            ):
                unit = [done[(prefix, p)] for p in range(parts[prefix])]
                out.workers.update(wid for wid, _ in unit)
                results = [r for _, r in unit]
                if results[0].episode.sign == 0:
                    out.evals.append(results[0])
                else:
                    out.train.append(results)
                    n_eps += len(results)
                    n_steps += sum(r.length for r in results)
                prefix += 1
            top_up()
        used = sum(len(u) for u in out.train) + len(out.evals)
        out.skipped += len(done) - used
        lengths = [r.length for u in out.train for r in u]
        self._expected_length = float(np.mean(lengths))
        return out


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
