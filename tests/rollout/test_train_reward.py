"""--train-reward: training episodes scored by weights on the env's own reward terms,
evaluations and the stock-return columns on the env's stock reward."""

import json

import numpy as np
import pytest

from esjax.config import Config
from esjax.errors import ConfigError
from esjax.rollout.envs import env_info, make_env
from esjax.rollout.train_reward import (
    PYBULLET_TERMS,
    check_train_reward,
    format_train_reward,
    parse_train_reward,
    step_reward_fn,
)
from tests.helpers import main_inline, only_run_dir, read_log, trainer_rows

STOCK_PYBULLET = ",".join(f"{t}=1" for t in PYBULLET_TERMS)


def test_spelling_round_trips_and_bad_spellings_are_one_line_errors():
    r = parse_train_reward("progress=1, joints_at_limit=1,action_sq=-0.01 constant=0.01")
    assert r == (("progress", 1.0), ("joints_at_limit", 1.0), ("action_sq", -0.01),
                 ("constant", 0.01))  # fmt: skip
    assert parse_train_reward(format_train_reward(r)) == r
    assert parse_train_reward("") == ()
    for bad, says in [("progress", "TERM=WEIGHT"), ("progress=x", "TERM=WEIGHT"),
                      ("=1", "TERM=WEIGHT"), ("progress=nan", "TERM=WEIGHT"),
                      ("progress=1,progress=2", "twice")]:  # fmt: skip
        with pytest.raises(ConfigError, match=says):
            parse_train_reward(bad)


def test_each_env_family_offers_its_own_terms():
    assert env_info("AntBulletEnv-v0").reward_terms == (*PYBULLET_TERMS, "constant", "action_sq")
    hopper = env_info("Hopper-v5").reward_terms
    assert {"forward", "ctrl", "survive", "constant", "action_sq"} == set(hopper)
    assert env_info("InvertedPendulumBulletEnv-v0").reward_terms == ("constant", "action_sq")
    with pytest.raises(ConfigError, match="has no reward term 'progress'.*no reward terms"):
        check_train_reward((("progress", 1.0),), "InvertedPendulumBulletEnv-v0",
                           ("constant", "action_sq"))  # fmt: skip
    with pytest.raises(ConfigError, match="'survive'.*its terms are alive, progress"):
        check_train_reward((("survive", 1.0),), "AntBulletEnv-v0",
                           env_info("AntBulletEnv-v0").reward_terms)  # fmt: skip


@pytest.mark.parametrize("env_id, weights, exact", [
    ("HopperBulletEnv-v0", STOCK_PYBULLET, True),  # the same sum, in the same order
    ("Hopper-v5", "forward=1,survive=1,ctrl=1", False),
    ("HalfCheetah-v5", "forward=1,ctrl=1", False),
])  # fmt: skip
def test_the_stock_terms_with_weight_1_give_the_stock_reward(env_id, weights, exact):
    env = make_env(env_id)
    fn = step_reward_fn(parse_train_reward(weights), env)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        _, rew, terminated, truncated, info = env.step(a)
        got = fn(info, a)
        if exact:
            assert got == float(rew)
        else:
            assert got == pytest.approx(float(rew), rel=1e-6, abs=1e-9)
        if terminated or truncated:
            env.reset(seed=2)
    env.close()


def test_action_sq_and_constant_on_any_env():
    env = make_env("InvertedPendulumBulletEnv-v0")
    fn = step_reward_fn(parse_train_reward("constant=0.5,action_sq=-2"), env)
    env.reset(seed=0)
    a = np.array([0.5], np.float32)
    _, _, _, _, info = env.step(a)
    assert fn(info, a) == 0.5 - 2 * 0.25
    env.close()


PENDULUM = ["--env", "InvertedPendulumBulletEnv-v0", "--preset", "none",
            "--noise-table-size", "2000000", "--hidden-dims", "8", "--num-workers", "1",
            "--envs-per-worker", "3", "--population-size", "6", "--timesteps-per-gen", "100",
            "--eval-every", "1", "--eval-episodes", "2", "--seed", "4"]  # fmt: skip


def test_training_ranks_the_training_return_and_logs_the_stock_one(tmp_path):
    # constant=2: a training step is worth 2, the stock pendulum's 1: the training return
    # is twice the length, the stock return (and every evaluation) the length itself.
    main_inline(*PENDULUM, "--train-reward", "constant=2", "--max-generations", "3",
                cwd=tmp_path)  # fmt: skip
    run = only_run_dir(tmp_path)
    rows = read_log(run)
    for r in rows:
        assert float(r["GenTrainRewMean"]) == 2 * float(r["GenLenMean"])
        assert float(r["GenRewMean"]) == float(r["GenLenMean"])
        assert float(r["PeriodicEvalRewMean"]) == float(r["PeriodicEvalLenMean"])
    assert json.loads((run / "config.json").read_text())["train_reward"] == "constant=2"


def test_without_a_training_reward_both_columns_agree(tmp_path):
    main_inline(*PENDULUM, "--max-generations", "2", cwd=tmp_path)
    for r in read_log(only_run_dir(tmp_path)):
        assert r["GenTrainRewMean"] == r["GenRewMean"] and r["GenTrainRewMax"] == r["GenRewMax"]


def test_bad_training_rewards_exit_2_with_one_line_and_create_nothing(tmp_path):
    for weights, says in [("progress=1", "has no reward term 'progress'"),
                          ("constant", "TERM=WEIGHT")]:  # fmt: skip
        proc = main_inline(*PENDULUM, "--train-reward", weights, "--max-generations", "1",
                           cwd=tmp_path, check=False)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert says in proc.stderr.strip().splitlines()[-1]
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    proc = main_inline(*PENDULUM, "--train-end-on-fall", "--max-generations", "1",
                       cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "has no alive term" in proc.stderr.strip().splitlines()[-1]
    with pytest.raises(ConfigError, match="must be a string"):
        Config(train_reward=1.5)


def test_a_resume_keeps_the_training_reward_and_refuses_another(tmp_path):
    main_inline(*PENDULUM, "--train-reward", "constant=2", "--max-generations", "2",
                cwd=tmp_path)  # fmt: skip
    run = only_run_dir(tmp_path)
    refused = main_inline("--resume", str(run), "--train-reward", "constant=3",
                          "--max-generations", "3", cwd=tmp_path, check=False)  # fmt: skip
    assert refused.returncode == 2 and "--train-reward" in refused.stderr
    main_inline("--resume", str(run), "--max-generations", "3", cwd=tmp_path)
    rows = read_log(run)
    assert [r["Generation"] for r in rows] == ["0", "1", "2"]
    assert float(rows[2]["GenTrainRewMean"]) == 2 * float(rows[2]["GenLenMean"])


def _short_run(env: str, envs_per_worker: int, resume_after: int | None = None, **kw):
    """Log rows and final θ of a short run of ``env`` with a training reward, inline
    (``envs_per_worker`` slots), optionally checkpointed and resumed midway."""
    kw = {"timesteps_per_gen": 300, "eval_every": 0, **kw}
    cfg = Config(env=env, seed=2, population_size=6, max_generations=3,
                 noise_table_size=2_000_000, hidden_dims=(8,), num_workers=1,
                 envs_per_worker=envs_per_worker, backend="inline", **kw)  # fmt: skip
    cols = ["GenRewMean", "GenTrainRewMean", "GenTrainRewMax", "GenLenMean", "GradNorm"]
    return trainer_rows(cfg, cfg.max_generations, resume_after, cols)


@pytest.mark.parametrize("env, kw", [
    ("HopperBulletEnv-v0", {"train_reward": "progress=1,joints_at_limit=1,action_sq=-0.01"}),
    # training episodes end at a fall (about 20 steps here), evaluations never
    ("HalfCheetahBulletEnv-v0", {"train_reward": "progress=1", "train_end_on_fall": True,
                                 "timesteps_per_gen": 1}),
])  # fmt: skip
def test_a_training_reward_keeps_layout_independence_and_exact_resume(env, kw):
    ref_log, ref_theta = _short_run(env, 1, **kw)
    assert (ref_log[:, 0] != ref_log[:, 1]).all()  # the training return is not the stock one
    if kw.get("train_end_on_fall"):
        assert (ref_log[:, 3] < 100).all()
    for log, theta in (_short_run(env, 3, **kw), _short_run(env, 2, resume_after=2, **kw)):
        np.testing.assert_array_equal(log, ref_log)
        np.testing.assert_array_equal(theta, ref_theta)


def test_end_on_fall_shortens_training_episodes_only_until_the_switch(tmp_path):
    # HalfCheetahBulletEnv-v0 never ends an episode; near-zero torques fold its legs (its
    # alive term goes negative) within tens of steps.
    main_inline("--env", "HalfCheetahBulletEnv-v0", "--preset", "none", "--hidden-dims", "8",
                "--noise-table-size", "1000000", "--population-size", "2",
                "--timesteps-per-gen", "1", "--eval-every", "2", "--eval-episodes", "1",
                "--train-end-on-fall", "--train-reward-until", "20", "--max-generations", "2",
                "--seed", "1", "--env-kwarg", "max_episode_steps=100",
                cwd=tmp_path)  # fmt: skip
    run = only_run_dir(tmp_path)
    rows = read_log(run)
    assert float(rows[0]["GenLenMean"]) < 100  # generation 0 starts at 0 steps (< 20)
    assert float(rows[1]["GenLenMean"]) == 100  # then the stock episodes (cut at 100 here)
    assert float(rows[0]["PeriodicEvalLenMean"]) == 100  # evaluations: the stock episodes
    assert json.loads((run / "config.json").read_text())["train_end_on_fall"] is True


def test_train_reward_until_ranks_the_stock_return_from_then_on(tmp_path):
    main_inline(*PENDULUM, "--train-reward", "constant=2", "--train-reward-until", "1",
                "--max-generations", "3", cwd=tmp_path)  # fmt: skip
    rows = read_log(only_run_dir(tmp_path))
    # generation 0 starts at 0 steps (< 1): shaped; the later ones: the stock return
    assert float(rows[0]["GenTrainRewMean"]) == 2 * float(rows[0]["GenLenMean"])
    for r in rows[1:]:
        assert r["GenTrainRewMean"] == r["GenRewMean"] and r["GenTrainRewMax"] == r["GenRewMax"]
    bad = main_inline(*PENDULUM, "--train-reward-until", "5", "--max-generations", "1",
                      cwd=tmp_path, check=False)  # fmt: skip
    assert bad.returncode == 2 and "needs --train-reward" in bad.stderr.strip().splitlines()[-1]
