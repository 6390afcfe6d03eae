"""The worker side in-process: batched forward pass, episode slots, real environments."""

import queue
import threading
import time

import numpy as np
import pytest

import esjax.rollout.worker
from esjax.core.noise import fill_noise_table, perturb
from esjax.core.policy import PolicySpec, policy_init, unravel
from esjax.rollout.envs import env_info, make_env
from esjax.rollout.messages import Aborted, Episode, Finished, Params, Run, Stop
from esjax.rollout.worker import EpisodeRunner, act, serve_episodes
from esjax.run.resolve import auto_envs_per_worker
from esjax.run.state import policy_spec


def stack(spec, flats):
    """Per-row weights [(W (K, in, out), b (K, out))] of the θs in ``flats``."""
    per_row = [unravel(spec, f) for f in flats]
    return [
        (np.stack([p[i][0] for p in per_row]), np.stack([p[i][1] for p in per_row]))
        for i in range(len(spec.layer_shapes))
    ]


@pytest.mark.parametrize("hidden", [(32, 32), (256, 256)])
@pytest.mark.parametrize("ob_dim, bins", [(15, 0), (28, 0), (5, 3)])
def test_a_row_gets_the_same_bits_in_any_slot_and_batch(hidden, ob_dim, bins):
    """The worker's batched forward pass gives each row exactly what a one-row call gives
    (evaluate's path, on weights that are unaligned views into θ), in every slot of
    batches of 1, 2, 3 and 8 rows, whatever the other rows hold."""
    spec = PolicySpec(ob_dim, 3, hidden, "tanh", (-1.0,) * 3, (1.0,) * 3, ac_bins=bins)
    rng = np.random.default_rng(ob_dim)
    flats = rng.normal(size=(8, spec.num_params)).astype(np.float32) * 0.2
    obs = rng.normal(size=(8, ob_dim)).astype(np.float32) * 3
    mean = rng.normal(size=ob_dim).astype(np.float32)
    std = rng.uniform(0.5, 2, size=ob_dim).astype(np.float32)
    single = [act(spec, unravel(spec, flats[i]), obs[i], mean, std) for i in range(8)]
    for k in (1, 2, 3, 8):
        for _ in range(3):
            rows = rng.permutation(8)[:k]
            got = act(spec, stack(spec, flats[rows]), obs[rows], mean, std)
            for slot, row in enumerate(rows):
                np.testing.assert_array_equal(got[slot], single[row])


class RecordingEnv:
    """Passes everything through and keeps each action it was given."""

    def __init__(self, env):
        self.env, self.actions = env, []
        self.action_space, self.observation_space = env.action_space, env.observation_space

    def reset(self, seed=None):
        return self.env.reset(seed=seed)

    def step(self, action):
        self.actions.append(np.array(action))
        return self.env.step(action)


def params(spec, theta, gen=0) -> Params:
    return Params(gen, theta, np.zeros(spec.ob_dim), np.ones(spec.ob_dim))


def run_all(runner: EpisodeRunner, episodes, gen=0, theta=None):
    spec = runner.spec
    theta = np.zeros(spec.num_params, np.float32) if theta is None else theta
    runner.set_params(params(spec, theta, gen))
    for ep in episodes:
        runner.add(ep)
    results = {}
    while runner.busy:
        for msg in runner.advance():
            assert isinstance(msg, Finished)
            results[(msg.result.episode.unit, msg.result.episode.part)] = msg.result
    return results


def hopper(cfg_kw=None, hidden=(32, 32)):
    from esjax.config import Config

    cfg = Config(env="HopperBulletEnv-v0", hidden_dims=hidden, **(cfg_kw or {}))
    spec = policy_spec(cfg, env_info(cfg.env))
    table = fill_noise_table(np.empty(200_000, np.float32), seed=1)
    import jax

    theta = np.asarray(policy_init(jax.random.PRNGKey(0), spec))
    return cfg, spec, table, theta


def units(n, calc_obstat=True):
    eps = []
    for u in range(n):
        for part, sign in enumerate((1, -1)):
            eps.append(Episode(0, u, part, 1000 * u, sign, 10 + u, 20 + u, calc_obstat))
    return eps


def test_results_do_not_depend_on_the_number_of_slots():
    """The same episodes in 1 and 8 lockstep slots of real Hopper envs give the same
    returns, lengths and observation statistics, bit for bit."""
    cfg, spec, table, theta = hopper()
    eps = units(12)
    got = []
    for k in (1, 8):
        envs = [make_env(cfg.env) for _ in range(k)]
        runner = EpisodeRunner(spec, envs, table, cfg.noise_stdev, cfg.ac_noise_std)
        got.append(run_all(runner, eps, theta=theta))
    lengths = {r.length for r in got[0].values()}
    assert len(lengths) > 3  # episodes of varied lengths, so slots drift apart
    for other in got[1:]:
        assert other.keys() == got[0].keys()
        for key, r in got[0].items():
            o = other[key]
            assert (o.ret, o.sign_ret, o.length, o.ob_count) == (r.ret, r.sign_ret, r.length,
                                                                 r.ob_count)  # fmt: skip
            np.testing.assert_array_equal(o.ob_sum, r.ob_sum)
            np.testing.assert_array_equal(o.ob_sumsq, r.ob_sumsq)


def test_slots_run_theta_plus_minus_sigma_eps_and_evaluations_run_theta():
    cfg, spec, table, theta = hopper(hidden=(8,))
    runner = EpisodeRunner(spec, [make_env(cfg.env)], table, 0.05, 0.0)
    runner.set_params(params(spec, theta))
    for sign in (1, -1, 0):
        runner._start(0, Episode(0, 0, 0, 777, sign, 1, 1, False))
        want = perturb(theta, table[777 : 777 + spec.num_params], sign, 0.05)
        if sign == 0:
            np.testing.assert_array_equal(want, theta)
        got = np.concatenate([np.concatenate([w[0].ravel(), b[0]]) for w, b in runner.stacked])
        np.testing.assert_array_equal(got, want)
        runner._clear(0)


def test_discretized_actions_are_on_the_bin_grid_without_action_noise():
    cfg, spec, table, theta = hopper({"discretize_actions": True, "ac_bins": 5}, hidden=(16,))
    envs = [RecordingEnv(make_env(cfg.env)) for _ in range(2)]
    runner = EpisodeRunner(spec, envs, table, cfg.noise_stdev, 0.0)
    run_all(runner, units(4), theta=theta * 50)  # big weights: all bins get used
    actions = np.concatenate([np.stack(e.actions) for e in envs])
    grid = np.linspace(-1.0, 1.0, 5, dtype=np.float32)
    assert np.isin(actions, grid).all() and len(np.unique(actions)) >= 3
    # with action noise, training actions leave the grid (the starter adds it after)
    envs = [RecordingEnv(make_env(cfg.env))]
    run_all(EpisodeRunner(spec, envs, table, cfg.noise_stdev, 0.01), units(1), theta=theta)
    assert not np.isin(np.stack(envs[0].actions), grid).all()


def test_new_params_drop_older_episodes_and_report_their_steps():
    cfg, spec, table, theta = hopper(hidden=(8,))
    runner = EpisodeRunner(spec, [make_env(cfg.env) for _ in range(2)], table, 0.02, 0.0)
    runner.set_params(params(spec, theta))
    for ep in units(3):
        runner.add(ep)
    for _ in range(4):
        assert runner.advance() == []  # Hopper episodes outlast 4 steps
    msgs = runner.set_params(params(spec, theta, gen=1))
    assert msgs == [Aborted(6, 8)]  # 2 running for 4 steps each, 4 pending
    assert not runner.busy


def test_a_worker_left_idle_runs_each_episode_it_is_sent_once(monkeypatch):
    """The worker loop (local processes and Ray actors alike), idle past its wait before
    the first message and between two batches, runs each episode exactly once."""
    monkeypatch.setattr(esjax.rollout.worker, "IDLE_WAIT_S", 0.05)
    cfg, spec, table, theta = hopper(hidden=(8,))
    runner = EpisodeRunner(spec, [make_env(cfg.env) for _ in range(2)], table, 0.02, 0.0)
    tasks, sent = queue.Queue(), queue.Queue()
    thread = threading.Thread(target=serve_episodes, args=(runner, tasks, sent.put))
    thread.start()
    eps = units(2)
    try:
        time.sleep(0.2)  # idle before any message
        tasks.put(params(spec, theta))
        for ep in eps[:2]:
            tasks.put(Run(ep))
        first = [sent.get(timeout=30), sent.get(timeout=30)]
        time.sleep(0.3)  # idle between batches
        for ep in eps[2:]:
            tasks.put(Run(ep))
        second = [sent.get(timeout=30), sent.get(timeout=30)]
        time.sleep(0.3)
    finally:
        tasks.put(Stop())
        thread.join(timeout=30)
    assert not thread.is_alive()
    rest = []
    while not sent.empty():
        rest.append(sent.get())
    assert all(isinstance(m, Finished) for m in first + second + rest)
    got = [(m.result.episode.unit, m.result.episode.part) for m in first + second + rest]
    assert sorted(got) == sorted((e.unit, e.part) for e in eps)


def test_auto_envs_per_worker_is_one_wave_capped_by_the_weights_cache_budget():
    # HalfCheetah-v5's preset, 64x64 (6,214 parameters): 20 training and 5 evaluation
    # episodes per generation in one wave on 2 workers (12 left one episode for later)
    assert auto_envs_per_worker(6_214, 20, 20_000, 1000, 2, eval_episodes=5) == 13
    # Ant's default 256x256 (75,272 parameters): 300 KB a slot, so 2
    assert auto_envs_per_worker(75_272, 40, 10_000, 1000, 2) == 2
    # a timestep minimum that needs more episodes than the population; the 32 cap
    assert auto_envs_per_worker(1_000, 8, 40_000, 1000, 2) == 20
    assert auto_envs_per_worker(100, 400, 10_000, 1000, 2) == 32
    assert auto_envs_per_worker(10**7, 40, 10_000, 1000, 2) == 1
    # --eval-prob units ride along: about 10 % more episodes
    assert auto_envs_per_worker(1_000, 40, 10_000, 1000, 2, eval_prob=0.1) == 22
    # a slow simulator step (AntBulletEnv-v0, ~500 µs) amortizes the policy call with few
    # slots: 4, not one wave of 23; a fast one (HalfCheetah-v5, ~50 µs) keeps the wave
    assert auto_envs_per_worker(1_000, 40, 10_000, 1000, 2, 5, step_seconds=5e-4) == 4
    assert auto_envs_per_worker(6_214, 20, 20_000, 1000, 2, 5, step_seconds=5e-5) == 13


class CountingEnv:
    """An episode of ``seed`` steps (terminated at its end); observations count steps."""

    def __init__(self):
        import gymnasium as gym

        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.t = self.length = 0

    def reset(self, seed=None):
        self.t, self.length = 0, seed
        return np.full(3, 0.1, np.float32), {}

    def step(self, action):
        self.t += 1
        return (
            np.full(3, 0.1 * self.t, np.float32),
            float(action[0]),
            self.t == self.length,
            False,
            {},
        )


def test_action_noise_and_step_times_across_noise_blocks_and_slots():
    """Episodes that end on, before and past a block of action noise, mixed with
    evaluations, give the same actions in 1 and 3 slots (each noisy episode draws from its
    own stream; an evaluation after one in the same slot gets none), and each result's
    policy-call share counts exactly its steps."""
    block = esjax.rollout.worker.NOISE_BLOCK
    spec = PolicySpec(3, 2, (4,), "tanh", (-1.0, -1.0), (1.0, 1.0))
    table = fill_noise_table(np.empty(10_000, np.float32), seed=3)
    lengths = [block, block - 1, 2 * block + 5, block, 7, 3 * block]
    signs = [1, 0, 1, 1, 0, -1]  # an evaluation follows an episode that used a whole block
    eps = [Episode(0, u, 0, 100 * u, sign, n, 50 + u, False)
           for u, (n, sign) in enumerate(zip(lengths, signs))]  # fmt: skip
    got = []
    for k in (1, 3):
        runner = EpisodeRunner(spec, [CountingEnv() for _ in range(k)], table, 0.02, 0.5,
                               record_actions=True)  # fmt: skip
        got.append(run_all(runner, eps, theta=np.full(spec.num_params, 0.1, np.float32)))
    for key, r in got[0].items():
        assert r.length == lengths[key[0]]
        np.testing.assert_array_equal(got[1][key].actions, r.actions)
        for res in (r, got[1][key]):
            total, low, high, count = res.time_predict
            assert count == res.length and 0 < low <= high <= total and res.time_glue >= 0
    noisy = got[0][(0, 0)].actions[: block - 1] - got[0][(1, 0)].actions
    assert np.abs(noisy).max() > 0  # the training episode's actions carry noise


def test_end_on_fall_ends_a_training_episode_at_the_first_negative_alive_term():
    """HalfCheetahBulletEnv-v0 never ends an episode; with near-zero torques its legs fold
    within tens of steps. An ``end_on_fall`` episode ends at the step whose alive term
    first goes negative, with the stock return of the steps it ran; the same episode
    without it runs to its time limit, and its recorded actions replayed show the
    alive term going negative at that very step."""
    from esjax.config import Config

    cfg = Config(env="HalfCheetahBulletEnv-v0", hidden_dims=(8,))
    spec = policy_spec(cfg, env_info(cfg.env))
    table = fill_noise_table(np.empty(20_000, np.float32), seed=1)
    import jax

    theta = np.asarray(policy_init(jax.random.PRNGKey(0), spec))
    ep = Episode(0, 0, 0, 100, 1, env_seed=5, noise_seed=6, calc_obstat=False)
    cut = ("max_episode_steps=200",)  # the stock 1,000 steps, cut for speed
    runner = EpisodeRunner(spec, [make_env(cfg.env, kwargs=cut)], table, 0.02, 0.01,
                           record_actions=True)  # fmt: skip
    ended = run_all(runner, [ep._replace(end_on_fall=True)], theta=theta)[(0, 0)]
    full = run_all(runner, [ep], theta=theta)[(0, 0)]
    assert full.length == 200 and 1 < ended.length < 100
    np.testing.assert_array_equal(ended.actions, full.actions[: ended.length])
    env = make_env(cfg.env)
    env.reset(seed=5)
    alive, stock = [], []
    for a in full.actions:
        stock.append(env.step(a)[1])
        alive.append(env.unwrapped.rewards[0])
    assert int(np.argmax(np.array(alive) < 0)) == ended.length - 1
    assert ended.ret == pytest.approx(sum(stock[: ended.length]), rel=1e-9)
