"""Every strategy of the registry (``esjax.core.strategies.STRATEGIES``), by the same
checks: its defaults fill a Config and its CLI help, its ES climbs a quadratic, its state
survives the checkpoint tree, and another strategy's options are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from esjax.config import Config
from esjax.core.noise import fill_noise_table
from esjax.core.strategies import ONLY_FOR, STRATEGIES
from esjax.errors import ConfigError
from esjax.run.state import build_es, initial_state, jitted_tell, state_from_tree, state_to_tree
from esjax.train import build_parser

P = 5
TABLE = jnp.asarray(fill_noise_table(np.empty(20_000, np.float32), seed=1))
TARGET = jnp.linspace(-1.0, 1.0, P)


@pytest.fixture(params=sorted(STRATEGIES))
def strategy(request):
    return STRATEGIES[request.param]


def test_config_takes_the_strategys_defaults_and_help_names_them(strategy):
    cfg = Config(algo=strategy.name)
    for option, value in strategy.defaults.items():
        assert getattr(cfg, option) == value, option
    helps = {a.dest: a.help for a in build_parser()._actions}
    assert strategy.name in helps["algo"]
    for option in strategy.defaults:
        if option in helps and "Default" in helps[option]:
            assert strategy.name in helps[option], option


def test_options_of_other_strategies_are_refused(strategy):
    for option, owners in ONLY_FOR.items():
        if strategy.name not in owners:
            value = getattr(Config(algo=owners[0]), option)  # a value its owner takes
            with pytest.raises(ConfigError, match="applies to --algo .* only, not"):
                Config(algo=strategy.name, **{option: value})


def test_the_strategy_climbs_a_quadratic(strategy):
    """Ten generations of 16 mirrored pairs on f(θ) = -|θ - target|²: closer every time
    it matters (the registry entry builds a working ES with the Config's options)."""
    cfg = Config(algo=strategy.name, learning_rate=0.05)
    es = build_es(cfg, P)
    ask, tell = jax.jit(es.ask, static_argnums=3), jitted_tell(es)  # one compilation each
    state = es.init(jnp.zeros(P))
    start = float(jnp.sum((state.theta - TARGET) ** 2))
    key = jax.random.PRNGKey(0)
    for _ in range(10):
        key, sub = jax.random.split(key)
        offsets, candidates = ask(sub, state, TABLE, 16)
        returns = -jnp.sum((candidates - TARGET) ** 2, axis=-1)
        state, info = tell(state, TABLE, offsets, returns)
        assert np.isfinite(float(info.grad_norm))
    assert float(jnp.sum((state.theta - TARGET) ** 2)) < 0.8 * start
    assert type(state) is strategy.state


def test_the_checkpoint_tree_round_trips_the_strategys_state(strategy):
    from esjax.rollout.envs import EnvInfo

    info = EnvInfo("Toy-v0", ob_dim=3, ac_dim=2, ac_low=(-1.0, -1.0), ac_high=(1.0, 1.0),
                   max_episode_steps=10, reward_threshold=None)  # fmt: skip
    cfg = Config(algo=strategy.name, hidden_dims=(4,))
    state = initial_state(cfg, info)
    tree = state_to_tree(state)
    back = state_from_tree(jax.tree.map(np.copy, tree), strategy.name)
    assert type(back.es) is strategy.state
    for a, b in zip(jax.tree.leaves(back.es), jax.tree.leaves(state.es)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert set(tree) - {"theta", "opt_state", "obstat", "counters", "gen_policy"} == set(
        strategy.state._fields[2:]
    )
