"""A chunk of episodes of a JAX-native env as one jitted function.

``chunk_rollout(...)`` runs C members at once: each reads its perturbation from the noise
table by offset (``θ + sign σ ε``, as the workers do), resets with its own seed, and steps
in lockstep with the others (members ``vmap``ped, time in blocks of ``BLOCK`` steps
``lax.scan``ned inside a ``lax.while_loop`` that stops once every member is done). A
member is masked after its episode ends (``jnp.where``, never a product: a fallen body's
state may diverge) and its state is frozen, so only live steps count and add to its
return and observation statistics. One episode per member; nothing is reset mid-chunk.

Results depend on the member's episode (offset, sign, seeds), θ, the statistics, and the
chunk size C (XLA vectorizes over the chunk: another C may change the last bits): the
pool keeps C fixed for a run (``--envs-per-worker``). No I/O here.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from esjax.core.noise import get_noise
from esjax.core.policy import PolicySpec, policy_apply, unravel

BLOCK = 16  # steps scanned between checks that some member is still running


class Members(NamedTuple):
    """The episodes of one chunk, each field (C,)."""

    offset: jax.Array  # int32: where the member's ε starts in the noise table
    sign: jax.Array  # float32: +1 / -1 (θ ± σε), 0 for θ itself (an evaluation)
    env_seed: jax.Array  # uint32: the reset's key
    noise_seed: jax.Array  # uint32: the action noise's key (training episodes)
    calc_obstat: jax.Array  # bool: the member gathers observation statistics


class MemberResults(NamedTuple):
    """What each member's episode reports, each field (C,) or (C, ob_dim)."""

    ret: jax.Array  # float32: stock return
    train_ret: jax.Array  # float32: --train-reward return (the stock one without it)
    sign_ret: jax.Array  # float32: sum of sign(reward)
    length: jax.Array  # int32: live steps
    ob_sum: jax.Array  # (C, ob_dim) float32: sum of the observations acted on (if gathering)
    ob_sumsq: jax.Array  # (C, ob_dim) float32
    finite: jax.Array  # bool: every action the policy produced was finite


class _Carry(NamedTuple):
    state: object  # the env states, batched
    alive: jax.Array
    ret: jax.Array
    train_ret: jax.Array
    sign_ret: jax.Array
    length: jax.Array
    ob_sum: jax.Array
    ob_sumsq: jax.Array
    finite: jax.Array


def _train_reward_fn(train_reward: tuple):
    """``fn(state, action) -> the step's --train-reward`` (None: the stock reward)."""
    if not train_reward:
        return None
    constant = sum(w for name, w in train_reward if name == "constant")
    action_sq = sum(w for name, w in train_reward if name == "action_sq")
    own = [(f"reward_{n}", w) for n, w in train_reward if n not in ("constant", "action_sq")]

    def fn(state, action):
        total = jnp.float32(constant)
        for key, w in own:
            total = total + jnp.float32(w) * state.metrics[key]
        if action_sq:
            total = total + jnp.float32(action_sq) * jnp.mean(jnp.square(action))
        return total

    return fn


def make_chunk_rollout(env, episode_length: int, spec: PolicySpec, ac_noise_std: float,
                       train_reward: tuple = ()):  # fmt: skip
    """The jitted ``rollout(table, theta, sigma, ob_mean, ob_std, members) ->
    MemberResults`` of ``env`` (reset/step, unbatched) for the policy ``spec``.

    table (T,) float32, passed (never closed over); theta (P,); sigma a float32 scalar or
    PGPE's (P,); ob_mean, ob_std (ob_dim,); members: ``Members`` of one chunk size C."""
    low = jnp.asarray(spec.ac_low, jnp.float32)
    high = jnp.asarray(spec.ac_high, jnp.float32)
    train_fn = _train_reward_fn(train_reward)
    num_params = spec.num_params

    def member_start(table, theta, sigma, m):
        eps = get_noise(table, m.offset, num_params)
        flat = theta + (m.sign * sigma).astype(jnp.float32) * eps
        return unravel(spec, flat), env.reset(jax.random.PRNGKey(m.env_seed))

    def member_step(params, ob_mean, ob_std, m, c: _Carry, t):
        ob = c.state.obs
        action = policy_apply(spec, params, ob, ob_mean, ob_std)
        if ac_noise_std > 0:  # training episodes only, a stream per member
            key = jax.random.fold_in(jax.random.PRNGKey(m.noise_seed), t)
            noise = jnp.float32(ac_noise_std) * jax.random.normal(key, (spec.ac_dim,))
            action = jnp.where(m.sign != 0, action + noise, action)
        finite = jnp.all(jnp.isfinite(action))
        action = jnp.clip(jnp.where(finite, action, 0.0), low, high)
        nxt = env.step(c.state, action)
        live = c.alive
        reward = jnp.where(live, nxt.reward, 0.0)
        gather = live & m.calc_obstat
        train = reward if train_fn is None else jnp.where(live, train_fn(nxt, action), 0.0)
        length = c.length + live.astype(jnp.int32)
        alive = live & (nxt.done == 0) & finite & (length < episode_length)
        state = jax.tree.map(lambda new, old: jnp.where(live, new, old), nxt, c.state)
        return _Carry(
            state=state,
            alive=alive,
            ret=c.ret + reward,
            train_ret=c.train_ret + train,
            sign_ret=c.sign_ret + jnp.sign(reward),
            length=length,
            ob_sum=c.ob_sum + jnp.where(gather, ob, 0.0),
            ob_sumsq=c.ob_sumsq + jnp.where(gather, jnp.square(ob), 0.0),
            finite=c.finite & (finite | ~live),
        )

    def rollout(table, theta, sigma, ob_mean, ob_std, members: Members) -> MemberResults:
        params, state = jax.vmap(member_start, in_axes=(None, None, None, 0))(
            table, theta, sigma, members
        )
        n = members.offset.shape[0]
        zeros = jnp.zeros(n, jnp.float32)
        ob_zeros = jnp.zeros((n, spec.ob_dim), jnp.float32)
        carry = _Carry(state, jnp.ones(n, bool), zeros, zeros, zeros, jnp.zeros(n, jnp.int32),
                       ob_zeros, ob_zeros, jnp.ones(n, bool))  # fmt: skip
        step = jax.vmap(member_step, in_axes=(0, None, None, 0, 0, None))

        def block(bc):
            t0, c = bc

            def one(c, i):
                return step(params, ob_mean, ob_std, members, c, t0 + i), None

            c, _ = jax.lax.scan(one, c, jnp.arange(BLOCK, dtype=jnp.int32))
            return t0 + BLOCK, c

        def running(bc):
            return jnp.any(bc[1].alive)

        _, c = jax.lax.while_loop(running, block, (jnp.int32(0), carry))
        return MemberResults(c.ret, c.train_ret, c.sign_ret, c.length, c.ob_sum, c.ob_sumsq,
                             c.finite)  # fmt: skip

    return jax.jit(rollout)


@functools.lru_cache(maxsize=8)
def cached_chunk_rollout(env, episode_length, spec, ac_noise_std, train_reward=()):
    """``make_chunk_rollout``, one compiled function per arguments in this process."""
    return make_chunk_rollout(env, episode_length, spec, ac_noise_std, train_reward)
