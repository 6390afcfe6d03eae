"""experiments/defaults_ab.py: its in-process changes and which earlier runs it reuses."""

import dataclasses

from esjax.core.policy import PolicySpec
from esjax.run.rundir import write_config
from esjax.train import parse
from experiments.defaults_ab import VARIANTS, reusable, train_command, variants_that_change
from experiments.harness import train_flags

SPEC = PolicySpec(ob_dim=15, ac_dim=3, hidden_dims=(50,), nonlin="tanh",
                  ac_low=(-1.0,) * 3, ac_high=(1.0,) * 3)  # fmt: skip


def test_each_variant_changes_exactly_one_option_and_one_the_preset_has_is_skipped():
    flags = train_flags("Walker2DBulletEnv-v0", 1_500_000, ["--num-workers", "1"])
    base, _, _ = parse(flags)
    changed = []
    for extra in VARIANTS.values():
        cfg, _, _ = parse([*flags, *extra])
        changed.append({f.name for f in dataclasses.fields(cfg)
                        if getattr(cfg, f.name) != getattr(base, f.name)})  # fmt: skip
    assert changed == [set(), {"obs_std_floor"}, {"output_init_std"}, {"timesteps_per_gen"},
                       {"population_size"}]  # fmt: skip
    assert variants_that_change(flags) == list(VARIANTS)
    hopper = train_flags("HopperBulletEnv-v0", 1_500_000, ["--num-workers", "1"])
    assert "output layer initialized at norm 1 (not 0.01)" not in variants_that_change(hopper)
    assert len(variants_that_change(hopper)) == len(VARIANTS) - 1


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
