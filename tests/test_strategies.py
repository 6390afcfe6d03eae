"""ARS and PGPE in the real trainer: resume ≡ straight run on other worker layouts, with
their whole state (σ, ClipUp's velocity) in the checkpoint, and their CLI spelling."""

import jax
import numpy as np
import pytest

from esjax.config import Config
from esjax.errors import ConfigError
from esjax.run.state import load_run, state_to_tree
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


def train(run_dir, cfg: Config, generations: int, workers: int, envs: int, resume=False,
          backend="local"):  # fmt: skip
    """Train ``cfg`` into ``run_dir`` up to ``generations`` on a layout (resuming its
    latest checkpoint if asked); (log columns, the state less timing)."""
    layout = {"max_generations": generations, "num_workers": workers, "envs_per_worker": envs,
              "backend": backend}  # fmt: skip
    trainer = Trainer.from_config(Config(**{**cfg.to_dict(), **layout}), log=lambda s: None)
    if resume:
        trainer.restore(load_run(run_dir, "latest", trainer.cfg, trainer.info))
    run_dir.mkdir(exist_ok=True)
    trainer.start()
    try:
        trainer.train(run_dir)
    finally:
        trainer.close()
    lines = (run_dir / "log.csv").read_text().splitlines()
    header = lines[0].split(",")
    log = [[float(row.split(",")[header.index(c)]) for c in COLUMNS] for row in lines[1:]]
    return np.array(log), results(trainer.state)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["ars", "pgpe"])  # pgpe: σ and ClipUp's velocity too
def test_strategy_resumes_exactly_and_gives_the_same_bits_for_every_layout(tmp_path, name):
    """Four generations straight in this process (1 worker x 1 env, inline); the same run
    as two generations on 3 worker processes x 2 envs, checkpointed, then resumed by a new
    trainer for two more on 2 x 3: the same log and the same state (θ, optimizer state,
    σ, statistics, counters)."""
    cfg = Config(**{**BASE, **STRATEGIES[name]})
    ref_log, ref_tree = train(tmp_path / "straight", cfg, 4, 1, 1, backend="inline")
    assert len(np.unique(ref_log[:, 2])) > 1  # mean episode lengths vary
    train(tmp_path / "resumed", cfg, 2, 3, 2)
    log, tree = train(tmp_path / "resumed", cfg, 4, 2, 3, resume=True)
    np.testing.assert_array_equal(log, ref_log)
    assert_trees_equal(tree, ref_tree)
    assert ("sigma" in tree) == (name == "pgpe")
    # PGPE's σ is per parameter, started at 15 x 0.05 / sqrt(P) and moved at most 20 % a
    # generation.
    if name == "pgpe":
        sigma = tree["sigma"]
        assert sigma.shape == tree["theta"].shape and np.ptp(sigma) > 0
        sigma0 = 0.75 / np.sqrt(sigma.size)
        assert np.all(sigma >= sigma0 * 0.8**4 * (1 - 1e-6))
        assert np.all(sigma <= sigma0 * 1.2**4 * (1 + 1e-6))


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
