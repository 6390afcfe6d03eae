"""experiments/defaults_ab.py: its in-process changes and which earlier runs it reuses."""

import dataclasses

import jax
import numpy as np

import esjax.core.obstat as obstat
import esjax.run.state as state
from esjax.core.policy import PolicySpec
from esjax.run.rundir import write_config
from esjax.train import parse
from experiments.defaults_ab import VARIANTS, apply_change, reusable, train_command
from experiments.harness import train_flags

SPEC = PolicySpec(ob_dim=15, ac_dim=3, hidden_dims=(50,), nonlin="tanh",
                  ac_low=(-1.0,) * 3, ac_high=(1.0,) * 3)  # fmt: skip


def test_every_variant_change_is_known():
    assert {key for _, key in VARIANTS.values()} == {None, "obs_std_floor", "output_init"}


def test_output_init_scales_the_output_layer_to_norm_1_and_keeps_the_rest(monkeypatch):
    monkeypatch.setattr(state, "policy_init", state.policy_init)  # restored after the test
    key = jax.random.PRNGKey(3)
    before = np.asarray(state.policy_init(key, SPEC))
    apply_change("output_init")
    after = np.asarray(state.policy_init(key, SPEC))
    n_w = 50 * 3
    out_w = slice(SPEC.num_params - 3 - n_w, SPEC.num_params - 3)
    np.testing.assert_allclose(np.linalg.norm(after[out_w].reshape(50, 3), axis=0), 1.0,
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(np.linalg.norm(before[out_w].reshape(50, 3), axis=0), 0.01,
                               rtol=1e-5)  # fmt: skip
    rest = np.ones(SPEC.num_params, bool)
    rest[out_w] = False
    np.testing.assert_array_equal(after[rest], before[rest])


def test_obs_std_floor_lowers_the_std_of_a_constant_observation(monkeypatch):
    monkeypatch.setattr(obstat, "STD_FLOOR_VAR", obstat.STD_FLOOR_VAR)
    stats = obstat.obstat_from_batch(np.ones((10, 2)))
    assert np.allclose(obstat.obstat_mean_std(stats)[1], 0.1)
    apply_change("obs_std_floor")
    assert np.allclose(obstat.obstat_mean_std(stats)[1], 0.001)


def test_reuses_a_run_of_the_same_training_whatever_its_layout_but_not_another(tmp_path):
    flags = train_flags("HopperBulletEnv-v0", 1_500_000, ["--num-workers", "1"])
    cfg, _, _ = parse([*flags, "--seed", "1"])
    write_config(tmp_path, dataclasses.replace(cfg, max_timesteps=5_000_000, num_workers=2,
                                               preset="probe/HopperBulletEnv-v0.toml",
                                               run_dir="elsewhere"))  # fmt: skip
    assert reusable(tmp_path, flags, 1)
    assert not reusable(tmp_path, flags, 2)  # another seed
    write_config(tmp_path, dataclasses.replace(cfg, population_size=40))
    assert not reusable(tmp_path, flags, 1)


def test_a_stopped_run_is_resumed_from_its_checkpoint_and_a_new_one_starts_otherwise(tmp_path):
    flags = train_flags("HopperBulletEnv-v0", 1_500_000, ["--num-workers", "1"])
    name = "40 episodes per generation"
    fresh = train_command(name, flags, 2, tmp_path)
    assert "--resume" not in fresh
    assert fresh[-4:] == ["--seed", "2", "--run-dir", str(tmp_path)]
    assert fresh[fresh.index("--population-size") + 1] == "40"
    no_checkpoint = tmp_path / "20261207-000000_HopperBulletEnv-v0"  # died before its first
    (no_checkpoint / "checkpoints").mkdir(parents=True)
    (no_checkpoint / "log.csv").write_text("")
    assert train_command(name, flags, 2, tmp_path) == fresh
    stopped = tmp_path / "20261207-000100_HopperBulletEnv-v0"
    (stopped / "checkpoints" / "40").mkdir(parents=True)
    (stopped / "log.csv").write_text("")
    resumed = train_command(name, flags, 2, tmp_path)
    assert resumed[-2:] == ["--resume", str(stopped)]
    assert resumed[resumed.index("--train") + 1] == name  # the variant's change applies again
