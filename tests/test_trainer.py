"""Each training option does what it says, observed on a real generation.

The episodes run in this process (``--backend inline``): no worker processes, and the
same results as any other backend (tests/test_golden.py, tests/test_determinism.py).
"""

import numpy as np
import pytest

from esjax.config import Config
from esjax.trainer import Trainer

BASE = dict(env="InvertedPendulumBulletEnv-v0", noise_table_size=200_000, hidden_dims=(16,),
            num_workers=1, envs_per_worker=2, population_size=8, timesteps_per_gen=200,
            learning_rate=0.05, weight_decay=False, eval_prob=0.0, backend="inline")  # fmt: skip


def one_generation(trainer: Trainer) -> dict:
    """Start ``trainer``, run one generation, close it: the generation's log row."""
    trainer.start()
    try:
        return trainer.step()
    finally:
        trainer.close()


def first_generation(**options):
    """(θ before, θ after, the Generation, log row) of generation 0 with these options."""
    collected = []
    trainer = Trainer.from_config(Config(**{**BASE, **options}), log=lambda s: None)
    trainer.events.subscribe("collected", collected.append)
    trainer.start()
    try:
        before = np.asarray(trainer.state.theta)
        row = trainer.step()
        return before, np.asarray(trainer.state.theta), collected[0], row
    finally:
        trainer.close()


@pytest.fixture(scope="module")
def plain():
    """Plain gradient ascent: the step is exactly lr * g."""
    return first_generation(gradient_optimizer=False)


def test_optimizers_and_divide_by_stdev_give_their_update_rules(plain):
    """Generation 0 runs the same episodes whatever the update rule, so g is shared."""
    before, after, _, _ = plain
    g = (after - before) / BASE["learning_rate"]
    assert np.abs(g).max() > 0
    sigma = 0.02
    _, div, _, _ = first_generation(gradient_optimizer=False, divide_by_stdev=True)
    np.testing.assert_allclose(div - before, (after - before) / sigma, rtol=1e-3, atol=1e-7)
    # sgd with momentum m: v = (1 - m) g on the first step, θ += lr v
    _, sgd, _, _ = first_generation(optimizer="sgd", momentum=0.9)
    np.testing.assert_allclose(sgd - before, 0.1 * (after - before), rtol=1e-3, atol=1e-7)
    # adam's first step: lr * g / (|g| + eps), i.e. lr * sign(g) where g is not tiny
    _, adam, _, _ = first_generation(optimizer="adam")
    big = np.abs(g) > 1e-4
    np.testing.assert_allclose((adam - before)[big], 0.05 * np.sign(g[big]), rtol=1e-3)
    # weight decay pulls toward zero: the step gains -lr * l2coeff * θ
    _, wd, _, _ = first_generation(gradient_optimizer=False, weight_decay=True, l2coeff=0.5)
    np.testing.assert_allclose(wd - after, -0.05 * 0.5 * before, rtol=1e-3, atol=1e-7)


def test_mirrored_sampling_runs_two_episodes_per_noise_vector_and_off_one(plain):
    _, _, gen, row = plain
    assert all([r.episode.sign for r in unit] == [1, -1] for unit in gen.train)
    assert all(unit[0].episode.env_seed == unit[1].episode.env_seed for unit in gen.train)
    _, _, single, row = first_generation(mirrored_sampling=False)
    assert all(len(unit) == 1 and unit[0].episode.sign == 1 for unit in single.train)
    assert row["EpisodesThisGen"] == len(single.train) >= BASE["population_size"]


def test_observation_statistics_are_gathered_only_with_normalization():
    _, _, gen, row = first_generation(calc_obstat_prob=1.0)
    assert row["ObCount"] == row["TimestepsThisGen"] > 0
    _, _, gen, row = first_generation(calc_obstat_prob=1.0, observation_normalization=False)
    assert row["ObCount"] == 0
    assert all(r.ob_count == 0 and not r.episode.calc_obstat for u in gen.train for r in u)


def test_evaluation_episodes_are_noiseless_logged_and_counted_apart():
    _, _, gen, row = first_generation(eval_prob=0.4)
    assert gen.evals and all(r.episode.sign == 0 for r in gen.evals)
    assert row["EvalGenCount"] == len(gen.evals)
    assert row["EvalGenRewardMean"] == pytest.approx(np.mean([r.ret for r in gen.evals]))
    train_steps = sum(r.length for u in gen.train for r in u)
    eval_steps = sum(r.length for r in gen.evals)
    assert row["TimestepsThisGen"] == train_steps  # the budget counts training only
    assert row["EnvStepsThisGen"] >= train_steps + eval_steps  # every step simulated


def test_periodic_evaluation_runs_noiseless_episodes_of_theta_and_changes_no_training():
    from esjax.evaluate import run_episodes
    from esjax.rollout.envs import make_env

    before, after, gen, row = first_generation(eval_every=1, eval_episodes=4)
    _, after_without, gen_without, row_without = first_generation(eval_every=0)
    assert len(gen.periodic) == 4 and not gen_without.periodic
    assert len({r.episode.env_seed for r in gen.periodic}) == 4
    # The same training episodes and update as a run without periodic evaluation.
    np.testing.assert_array_equal(after, after_without)
    assert [r.ret for u in gen.train for r in u] == [r.ret for u in gen_without.train for r in u]
    assert row["TimestepsThisGen"] == row_without["TimestepsThisGen"]
    # Noiseless episodes of the θ the generation started from, reset with their seeds.
    trainer = Trainer.from_config(Config(**BASE), log=lambda s: None)
    env = make_env(BASE["env"])
    try:
        for r in gen.periodic:
            rets, lens, _ = run_episodes(env, trainer.spec, before, 0.0, 1.0, 1, r.episode.env_seed)
            assert (rets[0], lens[0]) == pytest.approx((r.ret, r.length))
    finally:
        env.close()
    steps = sum(r.length for r in gen.periodic)
    assert row["PeriodicEvalCount"] == 4 and row["PeriodicEvalStepsSoFar"] == steps
    assert row["PeriodicEvalRewMean"] == pytest.approx(np.mean([r.ret for r in gen.periodic]))
    assert row["EnvStepsThisGen"] >= row_without["EnvStepsThisGen"] + steps


def test_reward_shift_ranks_return_minus_shift_per_step_and_logs_true_returns():
    collected = []
    trainer = Trainer.from_config(Config(**{**BASE, "reward_shift": 1.5}), log=lambda s: None)
    trainer.events.subscribe("collected", collected.append)
    seen = {}
    tell = trainer.tell

    def capture(state, table, offsets, returns, *rest):
        seen["returns"] = np.asarray(returns)
        return tell(state, table, offsets, returns, *rest)

    trainer.tell = capture
    row = one_generation(trainer)
    gen = collected[0]
    want = np.array([[r.ret - 1.5 * r.length for r in u] for u in gen.train], np.float32)
    np.testing.assert_allclose(seen["returns"][: len(want)], want)
    assert len({r.length for u in gen.train for r in u}) > 1  # so the shift is no constant
    assert row["GenRewMean"] == pytest.approx(np.mean([[r.ret for r in u] for u in gen.train]))


def test_workers_that_keep_failing_end_the_run_after_a_checkpoint(tmp_path):
    """A crash loop (the dispatcher gives up on a worker, or every Ray node is gone) ends
    in WorkerError, and the last completed generation is saved first, ready to resume."""
    from esjax.errors import WorkerError
    from esjax.run.checkpoint import CheckpointStore
    from esjax.run.resolve import make_pool, resolve_config

    class GivingUpPool:
        """The inline pool, until generation 2's first receive: then a crash loop."""

        def __init__(self, pool):
            self.pool, self.gen = pool, 0

        def __getattr__(self, name):
            return getattr(self.pool, name)

        def broadcast_params(self, gen, *args):
            self.gen = gen
            self.pool.broadcast_params(gen, *args)

        def recv(self, timeout):
            if self.gen == 2:
                raise WorkerError("worker 0 keeps dying (exit code -9; 3 restarts in a row)")
            return self.pool.recv(timeout)

    cfg, spec = resolve_config(Config(**{**BASE, "max_generations": 10, "snapshot_freq": 0,
                                         "eval_every": 0}))  # fmt: skip
    pool = GivingUpPool(make_pool(cfg, spec, log=lambda s: None))
    trainer = Trainer(cfg, pool=pool, log=lambda s: None)
    trainer.start()
    try:
        with pytest.raises(WorkerError, match="keeps dying"):
            trainer.train(tmp_path)
    finally:
        trainer.close()
    store = CheckpointStore(tmp_path, read_only=True)
    assert store.steps() == [2]
    store.close()


def test_each_generation_is_logged_and_checkpointed_while_the_next_one_runs(tmp_path):
    """The workers do not wait on the disk: generation g's log row and checkpoint are
    written once generation g + 1's first episodes are out (the last generation's after
    it); every row and checkpoint is there at the end, and the update compiled once. Seen
    through the trainer's events."""
    from esjax.run import checkpoint

    events = []
    cfg = Config(**{**BASE, "max_generations": 3, "snapshot_freq": 1})
    trainer = Trainer.from_config(cfg, log=lambda s: None)
    trainer.events.subscribe("dispatched", lambda g: events.append(("sent", g)))
    trainer.events.subscribe("checkpointed", lambda step: events.append(("save", step)))
    trainer.start()
    try:
        trainer.train(tmp_path, on_generation=lambda row: events.append(("row", row["Generation"])))
    finally:
        trainer.close()
    assert events == [("sent", 0), ("sent", 1), ("row", 0), ("save", 1),
                      ("sent", 2), ("row", 1), ("save", 2), ("row", 2), ("save", 3)]  # fmt: skip
    assert checkpoint.CheckpointStore(tmp_path).steps() == [1, 2, 3]
    assert trainer.update_compilations() == 1  # a start's state and tell's share it
    assert trainer.warm_up_errors == []


def test_events_follow_each_generation_and_unknown_names_are_refused():
    seen = []
    trainer = Trainer.from_config(Config(**{**BASE, "max_generations": 2}), log=lambda s: None)
    for name in ("collecting", "dispatched", "collected", "updated"):
        trainer.events.subscribe(name, lambda *args, name=name: seen.append(name))
    with pytest.raises(ValueError, match="no event 'done'"):
        trainer.events.subscribe("done", print)
    trainer.start()
    try:
        trainer.step()
    finally:
        trainer.close()
    assert seen == ["collecting", "dispatched", "collected", "updated"]


def test_a_failed_warm_up_is_reported_and_the_run_goes_on():
    """The update's warm-up compiles it ahead; when that fails, the trainer says so in one
    line and the first generation compiles it itself."""
    lines = []
    trainer = Trainer.from_config(Config(**BASE), log=lines.append)
    calls, real = [], trainer._compiled_tell

    def tell(*args):
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("out of memory while compiling")
        return real(*args)

    trainer._compiled_tell = tell
    trainer.tell = tell
    row = one_generation(trainer)
    assert row["Generation"] == 0 and len(calls) == 2
    assert trainer.warm_up_errors == [
        "warm-up of the update failed (RuntimeError: out of memory while compiling); it "
        "compiles when first used"
    ]
    assert trainer.warm_up_errors[0] in lines
