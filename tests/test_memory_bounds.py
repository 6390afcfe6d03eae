"""A run whose flag-sized parts cannot fit in memory is refused at start-up, in one line
naming the flag, before anything is created (a machine-wide OOM kill otherwise)."""

import pytest

from esjax.config import Config
from esjax.errors import ConfigError
from esjax.rollout.envs import env_info
from esjax.run.resolve import resolve_config
from tests.helpers import main_inline

PENDULUM = dict(env="InvertedPendulumBulletEnv-v0", noise_table_size=2_000_000,
                hidden_dims=(8,), num_workers=2, envs_per_worker=2)  # fmt: skip


@pytest.mark.parametrize("options, flag", [
    (dict(population_size=1_000_000_000), "--population-size"),
    (dict(hidden_dims=(6000, 6000), noise_table_size=40_000_000), "--hidden-dims"),
    (dict(hidden_dims=(1000, 1000), envs_per_worker=32, num_workers=16), "--envs-per-worker"),
])  # fmt: skip
def test_what_cannot_fit_is_refused_naming_its_flag(options, flag):
    cfg = Config(**{**PENDULUM, **options})
    info = env_info(cfg.env)
    with pytest.raises(ConfigError, match=f"needs about .* GiB of memory \\({flag} alone"):
        resolve_config(cfg, info, memory=1 << 30)
    resolve_config(Config(**PENDULUM), info, memory=1 << 30)  # the small run fits


def test_the_cli_refuses_a_huge_population_with_exit_2_and_creates_nothing(tmp_path):
    proc = main_inline("--env", "InvertedPendulumBulletEnv-v0", "--preset", "none",
                       "--population-size", "1000000000", cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "lower --population-size" in proc.stderr
    assert not (tmp_path / "runs").exists()
