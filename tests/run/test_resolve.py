"""``esjax.run.resolve``: a Config fitted to its env and machine. Derived values (envs per
worker for 'auto') and the backend's pool follow from the options; a run whose flag-sized
parts cannot fit in memory is refused at start-up, in one line naming the flag, before
anything is created (a machine-wide OOM kill otherwise)."""

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


def test_auto_envs_per_worker_fills_one_wave_within_its_caps():
    from esjax.run.resolve import MAX_ENVS_PER_WORKER, auto_envs_per_worker

    # 40 episodes + 5 evaluations over 2 workers: one wave is 23 slots each
    assert auto_envs_per_worker(1000, 40, 1, 1000, 2, eval_episodes=5) == 23
    # the timestep minimum sets the episodes when it asks for more: 10,000 steps of
    # 100-step episodes are 100 episodes, 25 per worker; 32 at most
    assert auto_envs_per_worker(1000, 10, 10_000, 100, 4) == 25
    assert auto_envs_per_worker(1000, 10, 100_000, 100, 4) == MAX_ENVS_PER_WORKER
    # huge policies: the slots' weights stay cache-sized, and never fewer than one slot
    assert auto_envs_per_worker(50_000_000, 40, 1, 1000, 1) == 1
    # a slow simulator amortizes inference with few slots
    assert auto_envs_per_worker(1000, 400, 1, 1000, 1, step_seconds=1.0) < 8


def test_resolve_fills_auto_and_picks_the_backends_pool():
    from esjax.rollout.inline import InlinePool
    from esjax.rollout.local import LocalPool
    from esjax.run.resolve import make_pool

    cfg = Config(**{**PENDULUM, "envs_per_worker": 0, "backend": "inline"})
    resolved, spec = resolve_config(cfg, env_info(cfg.env))
    assert resolved.envs_per_worker >= 1 and spec.ob_dim == 5 and spec.ac_dim == 1
    assert isinstance(make_pool(resolved, spec, log=lambda s: None), InlinePool)
    local = Config(**{**PENDULUM, "backend": "local"})
    assert isinstance(make_pool(*resolve_config(local), log=lambda s: None), LocalPool)
    with pytest.raises(ValueError, match="make_pool needs a resolved Config"):
        make_pool(cfg, spec)
