"""JAX-native envs: a generation's episodes as one jitted call per chunk of members, with
the trainer's guarantees (strategies, evaluations, repeatability, exact resume). A tiny
JAX env (tests/rollout/point_env.py) compiles in about a second; Brax itself is in the
slow tier (tests/test_learning.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from esjax.config import Config
from esjax.core.policy import PolicySpec, policy_apply, policy_init, unravel
from esjax.rollout.jax_envs import is_jax_env, make_jax_env, register_jax_envs
from esjax.rollout.jax_rollout import Members, make_chunk_rollout
from tests.helpers import main_inline, only_run_dir, read_log, run_module, trainer_rows
from tests.rollout.point_env import PointEnv, make_point

register_jax_envs("point/", make_point)

SPEC = PolicySpec(2, 1, (4,), "tanh", (-1.0,), (1.0,))
LENGTH = 30
TABLE = jnp.asarray(np.random.default_rng(0).standard_normal(10_000, dtype=np.float32))
POINT = ["--env", "point/line", "--env-kwarg", f"episode_length={LENGTH}", "--preset", "none",
         "--noise-table-size", "20000", "--hidden-dims", "4", "--population-size", "6",
         "--timesteps-per-gen", "1", "--envs-per-worker", "4", "--eval-every", "2",
         "--eval-episodes", "3", "--seed", "3"]  # fmt: skip


def _members(offsets, signs, env_seeds, calc=None):
    n = len(offsets)
    return Members(jnp.asarray(offsets, jnp.int32), jnp.asarray(signs, jnp.float32),
                   jnp.asarray(env_seeds, jnp.uint32), jnp.asarray(env_seeds, jnp.uint32) + 7,
                   jnp.asarray(calc if calc is not None else [True] * n))  # fmt: skip


def _loop_reference(env, theta, sigma, offset, sign, env_seed, ac_noise_std, noise_seed):
    """One member's episode, a step at a time in Python."""
    eps = TABLE[offset : offset + SPEC.num_params]
    params = unravel(SPEC, theta + jnp.float32(sign * sigma) * eps)
    state = env.reset(jax.random.PRNGKey(env_seed))
    ret, length, ob_sum = 0.0, 0, np.zeros(2)
    while length < LENGTH:
        ob = state.obs
        a = policy_apply(SPEC, params, ob, jnp.zeros(2), jnp.ones(2))
        if ac_noise_std and sign:
            key = jax.random.fold_in(jax.random.PRNGKey(noise_seed), length)
            a = a + ac_noise_std * jax.random.normal(key, (1,))
        state = env.step(state, jnp.clip(a, -1.0, 1.0))
        ob_sum += np.asarray(ob)
        ret += float(state.reward)
        length += 1
        if state.done:
            break
    return ret, length, ob_sum


@pytest.mark.parametrize("ac_noise_std", [0.0, 0.3])
def test_a_chunk_matches_a_plain_loop_and_masks_after_the_end(ac_noise_std):
    env = PointEnv(gain=0.3)  # strong enough that some members leave the line early
    theta = policy_init(jax.random.PRNGKey(1), SPEC)
    rollout = make_chunk_rollout(env, LENGTH, SPEC, ac_noise_std)
    offsets, signs, seeds = [0, 100, 100, 900], [1, -1, 1, 0], [5, 5, 6, 7]
    out = rollout(TABLE, theta, jnp.float32(0.5), jnp.zeros(2), jnp.ones(2),
                  _members(offsets, signs, seeds))  # fmt: skip
    lengths = []
    for i, (o, s, e) in enumerate(zip(offsets, signs, seeds)):
        ret, length, ob_sum = _loop_reference(env, theta, 0.5, o, s, e, ac_noise_std, e + 7)
        assert int(out.length[i]) == length
        np.testing.assert_allclose(float(out.ret[i]), ret, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(out.ob_sum[i]), ob_sum, rtol=1e-5, atol=1e-5)
        lengths.append(length)
    assert min(lengths) < LENGTH == max(lengths)  # one ended early, one ran to the limit
    assert bool(out.finite.all())


def test_a_members_result_depends_on_neither_its_place_nor_its_neighbours():
    env = PointEnv(gain=0.3)
    theta = policy_init(jax.random.PRNGKey(2), SPEC)
    rollout = make_chunk_rollout(env, LENGTH, SPEC, 0.1)
    a = rollout(TABLE, theta, jnp.float32(0.5), jnp.zeros(2), jnp.ones(2),
                _members([10, 20, 30, 40], [1, -1, 1, 0], [1, 2, 3, 4]))  # fmt: skip
    b = rollout(TABLE, theta, jnp.float32(0.5), jnp.zeros(2), jnp.ones(2),
                _members([40, 999, 20, 10], [0, 1, -1, 1], [4, 9, 2, 1]))  # fmt: skip
    for i, j in [(0, 3), (1, 2), (3, 0)]:
        for field in ("ret", "train_ret", "length", "ob_sum", "ob_sumsq"):
            np.testing.assert_array_equal(getattr(a, field)[i], getattr(b, field)[j])


def test_statistics_gather_only_where_asked_and_train_reward_weighs_the_metrics():
    env = PointEnv()
    theta = policy_init(jax.random.PRNGKey(3), SPEC)
    weights = (("constant", 0.5), ("dist", 2.0), ("ctrl", 2.0))
    rollout = make_chunk_rollout(env, LENGTH, SPEC, 0.0, weights)
    out = rollout(TABLE, theta, jnp.float32(0.1), jnp.zeros(2), jnp.ones(2),
                  _members([0, 0], [1, 1], [3, 3], calc=[True, False]))  # fmt: skip
    assert float(jnp.abs(out.ob_sum[0]).sum()) > 0 and float(jnp.abs(out.ob_sum[1]).sum()) == 0
    # a step: stock = 1 + dist + ctrl, train = 0.5 + 2 dist + 2 ctrl = 2 stock - 1.5
    n = int(out.length[0])
    np.testing.assert_allclose(float(out.train_ret[0]), 2 * float(out.ret[0]) - 1.5 * n,
                               rtol=1e-5)  # fmt: skip


def test_ids_and_bad_input_are_one_line_errors(tmp_path):
    assert is_jax_env("brax/ant") and is_jax_env("point/line")
    assert not is_jax_env("AntBulletEnv-v0")
    cases = [
        (["--env", "brax/antt"], "did you mean brax/ant"),
        (["--env", "point/line", "--env-kwarg", "episode_length=0"], "episode_length"),
        (["--env", "point/line", "--env-kwarg", "gian=1"], "--env-kwarg gian"),
        ([*POINT, "--backend", "ray"], "drop --backend ray"),
        ([*POINT, "--train-reward", "progress=1"], "its terms are ctrl, dist"),
    ]
    for args, says in cases:
        proc = main_inline(*args, "--max-generations", "1", cwd=tmp_path, backend=None,
                           check=False)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert says in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert make_jax_env("point/line").reward_terms == ("ctrl", "dist")


def _run(algo: str, resume_after: int | None = None, gens: int = 4, lanes: int = 1):
    """Log rows and final θ of a short point/line run (``lanes`` chunks at once),
    optionally checkpointed and resumed."""
    cfg = Config(env="point/line", env_kwargs=(f"episode_length={LENGTH}",), algo=algo,
                 seed=1, population_size=6, timesteps_per_gen=100, max_generations=gens,
                 noise_table_size=20_000, hidden_dims=(4,), envs_per_worker=4, num_workers=lanes,
                 eval_every=2, eval_episodes=3,
                 train_reward="constant=0.5,dist=1" if algo == "pgpe" else "")  # fmt: skip
    cols = ["GenRewMean", "GenTrainRewMean", "GenLenMean", "TimestepsSoFar", "ObCount",
            "PeriodicEvalRewMean", "GradNorm"]  # fmt: skip
    return trainer_rows(cfg, gens, resume_after, cols)


@pytest.mark.parametrize("algo", ["openai-es", "ars", "pgpe"])
def test_every_strategy_trains_repeats_bit_for_bit_and_resumes_exactly(algo):
    log, theta = _run(algo)
    assert (log[:, 3] > 0).all() and np.isfinite(log[::2, 5]).all()  # steps; evaluations
    if algo == "pgpe":
        assert (log[:, 0] != log[:, 1]).all()  # the training return is not the stock one
    # the same with 3 chunks at once (threads), and checkpointed and resumed midway
    for again, theta_again in (_run(algo, lanes=3), _run(algo, resume_after=2)):
        np.testing.assert_array_equal(again, log)
        np.testing.assert_array_equal(theta_again, theta)


def test_the_cli_writes_a_run_that_evaluates_and_exports(tmp_path):
    main_inline(*POINT, "--max-generations", "3", cwd=tmp_path, backend=None)
    run = only_run_dir(tmp_path)
    assert run.name.endswith("_point_line")
    rows = read_log(run)
    assert len(rows) == 3 and all(int(r["TimestepsThisGen"]) > 0 for r in rows)
    assert all(float(r["StepsPerSec"]) > 0 for r in rows)
    ev = run_module("esjax.evaluate", str(run), "--checkpoint", "best", "--episodes", "3")
    assert ev.returncode == 0, ev.stderr
    assert "point/line checkpoint" in ev.stdout and "3 episodes" in ev.stdout
    video = run_module("esjax.evaluate", str(run), "--video", str(tmp_path / "v.mp4"))
    assert video.returncode == 2 and "has no render(trajectory)" in video.stderr
    assert "episodes" not in video.stdout  # refused before any episode ran
    out = tmp_path / "policy.npz"
    ex = run_module("esjax.export", str(run), "--out", str(out))
    assert ex.returncode == 0, ex.stderr
    assert out.exists()
