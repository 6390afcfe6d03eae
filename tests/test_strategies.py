"""ARS and PGPE in the real trainer: layout-independent bits, resume ≡ straight run with
their whole state (σ, ClipUp's velocity) in the checkpoint, and their CLI spelling."""

import jax
import numpy as np
import pytest

from esjax.config import Config, ConfigError
from esjax.state import load_run, state_to_tree
from esjax.trainer import Trainer

# InvertedDoublePendulum-v5: fast MuJoCo steps and episodes of varied length, so the same
# episode runs in a different slot after a different predecessor in each layout.
BASE = dict(env="InvertedDoublePendulum-v5", seed=2, noise_table_size=2_000_000,
            population_size=12, timesteps_per_gen=300, max_generations=3, eval_every=2,
            eval_episodes=2, calc_obstat_prob=0.5)  # fmt: skip
STRATEGIES = {
    "ars": dict(algo="ars", hidden_dims=(), top_directions=3, reward_shift=1.0),
    "pgpe": dict(algo="pgpe", hidden_dims=(8,), max_speed=0.05),
}
COLUMNS = ["GenRewMean", "GenRewStd", "GenLenMean", "TimestepsThisGen", "ObCount",
           "GradNorm", "SigmaMean", "PeriodicEvalRewMean"]  # fmt: skip


def run(name, workers, envs, **kw):
    """(log columns, final state tree) of BASE + strategy ``name`` on a layout."""
    cfg = Config(**{**BASE, **STRATEGIES[name], "num_workers": workers,
                    "envs_per_worker": envs, **kw})  # fmt: skip
    trainer = Trainer(cfg, log=lambda s: None)
    trainer.start()
    try:
        rows = [trainer.step() for _ in range(cfg.max_generations)]
    finally:
        trainer.close()
    return np.array([[r[c] for c in COLUMNS] for r in rows]), results(trainer.state)


def results(state) -> dict:
    """The state's checkpoint tree less what depends on timing: seconds, and env steps
    (episodes thrown away at a generation's end vary with arrival order)."""
    tree = state_to_tree(state)
    for key in ("time_elapsed", "env_steps"):
        tree["counters"].pop(key)
    return tree


def assert_trees_equal(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["ars", "pgpe"])
def test_strategy_gives_the_same_bits_for_every_worker_layout(name):
    ref_log, ref_tree = run(name, 1, 1)
    assert len(np.unique(ref_log[:, 2])) > 1  # mean episode lengths vary
    for workers, envs in [(2, 3), (3, 2)]:
        log, tree = run(name, workers, envs)
        np.testing.assert_array_equal(log, ref_log, err_msg=f"{workers} x {envs}")
        assert_trees_equal(tree, ref_tree)


def test_pgpe_learns_sigma_per_parameter_and_sends_it_to_the_workers():
    _, tree = run("pgpe", 2, 2)
    sigma = tree["sigma"]
    assert sigma.shape == tree["theta"].shape and np.ptp(sigma) > 0  # per parameter
    # σ0 = 15 x 0.05 / sqrt(P); each step moves σ by at most 20 %.
    sigma0 = 0.75 / np.sqrt(sigma.size)
    assert np.all(sigma >= sigma0 * 0.8**3 * (1 - 1e-6))
    assert np.all(sigma <= sigma0 * 1.2**3 * (1 + 1e-6))


@pytest.mark.parametrize("name", ["ars", "pgpe"])  # pgpe: σ and ClipUp's velocity too
def test_resume_continues_every_strategy_exactly(tmp_path, name):
    """Two generations, a checkpoint, a new trainer resuming for two more: the same state
    (θ, optimizer state, σ, statistics, counters) and log as four straight generations."""
    cfg = Config(**{**BASE, **STRATEGIES[name], "num_workers": 2, "max_generations": 4})

    def train(run_dir, generations, resume=False):
        trainer = Trainer(Config(**{**cfg.to_dict(), "max_generations": generations}),
                          log=lambda s: None)  # fmt: skip
        if resume:
            trainer.restore(load_run(run_dir, "latest", trainer.cfg, trainer.info))
        run_dir.mkdir(exist_ok=True)
        trainer.start()
        try:
            trainer.train(run_dir)
        finally:
            trainer.close()
        return trainer

    straight = train(tmp_path / "straight", 4)
    train(tmp_path / "resumed", 2)
    resumed = train(tmp_path / "resumed", 4, resume=True)
    a, b = results(straight.state), results(resumed.state)
    assert_trees_equal(a, b)
    if name.startswith("pgpe"):
        assert "sigma" in a
    logs = [(tmp_path / d / "log.csv").read_text().splitlines() for d in ("straight", "resumed")]
    header = logs[0][0].split(",")
    keep = [header.index(c) for c in COLUMNS]
    assert [[r.split(",")[i] for i in keep] for r in logs[0][1:]] == [
        [r.split(",")[i] for i in keep] for r in logs[1][1:]
    ]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(algo="ars", return_proc_mode="sign"), "--return-proc-mode applies to --algo"),
        (dict(algo="ars", fitness_shaping=False), "--fitness-shaping applies to --algo"),
        (dict(algo="pgpe", noise_stdev=0.1), "--noise-stdev applies to --algo openai-es / ars"),
        (dict(algo="pgpe", divide_by_stdev=True), "--divide-by-stdev applies to --algo"),
        (dict(top_directions=4), "--top-directions applies to --algo ars only"),
        (dict(algo="ars", sigma_lr=0.2), "--sigma-lr applies to --algo pgpe only"),
        (dict(init_radius=1.0), "--init-radius applies to --algo pgpe only"),
        (dict(algo="pgpe", mirrored_sampling=False), "always samples mirrored pairs"),
        (dict(max_speed=0.1), "--max-speed applies to --optimizer clipup only"),
        (dict(algo="ars", top_directions=21), "more than the 20 directions"),
        (dict(algo="pgpe", sigma_max_change=1.5), "--sigma-max-change is a fraction"),
        (dict(hidden_dims=("linear", 4)), "--hidden-dims takes layer sizes or the word linear"),
    ],
)
def test_options_of_another_strategy_are_a_one_line_error(options, message):
    with pytest.raises(ConfigError, match=message) as e:
        Config(**options)
    assert "\n" not in str(e.value)


def test_cli_spelling_of_strategies_and_linear_policies(capsys):
    from esjax.train import build_parser, main

    args = build_parser().parse_args(["--algo", "ars", "--hidden-dims", "linear",
                                      "--top-directions", "4"])  # fmt: skip
    cfg = Config(**{k: v for k, v in vars(args).items() if k not in ("resume", "preset")})
    assert (cfg.hidden_dims, cfg.optimizer, cfg.momentum, cfg.l2coeff) == ((), "sgd", 0.0, 0.0)
    assert cfg.return_proc_mode is None and cfg.top_directions == 4
    pgpe = Config(algo="pgpe")
    assert (pgpe.optimizer, pgpe.max_speed, pgpe.learning_rate, pgpe.init_radius) == (
        "clipup",
        0.15,
        0.1125,
        2.25,
    )
    assert Config(algo="pgpe", learning_rate=0.01).max_speed == 0.02  # 2 x step (EvoTorch)
    with pytest.raises(SystemExit) as e:
        main(["--algo", "pgpe", "--noise-stdev", "0.1", "--env", "InvertedPendulum-v5"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--noise-stdev applies to --algo openai-es / ars only, not pgpe" in err
