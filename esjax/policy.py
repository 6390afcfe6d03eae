"""MLP policy as pure functions on a flat parameter vector.

The flat vector θ (P,) is what ES perturbs; it is turned into layer weights only here
(``unravel``), once per episode in the workers, never per step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from esjax.core.obstat import CLIP

NONLINEARITIES = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "lrelu": lambda x: jax.nn.leaky_relu(x, negative_slope=0.01),  # OpenAI reference leak
    "elu": jax.nn.elu,
}


class PolicySpec(NamedTuple):
    """Static description of the policy network (hashable: usable as a jit static arg).

    ac_bins == 0 means continuous actions; otherwise each action dimension picks the
    arg-max of ``ac_bins`` logits, mapped uniformly onto [ac_low, ac_high].
    """

    ob_dim: int
    ac_dim: int
    hidden_dims: tuple[int, ...]
    nonlin: str
    ac_low: tuple[float, ...]
    ac_high: tuple[float, ...]
    ac_bins: int = 0
    normalize_obs: bool = True

    @property
    def out_dim(self) -> int:
        return self.ac_dim * self.ac_bins if self.ac_bins else self.ac_dim

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        dims = [self.ob_dim, *self.hidden_dims, self.out_dim]
        return list(zip(dims[:-1], dims[1:]))

    @property
    def num_params(self) -> int:
        return sum(i * o + o for i, o in self.layer_shapes)


Params = list[tuple[jax.Array, jax.Array]]  # [(W (in, out), b (out,)), ...]


def normc(key: jax.Array, shape: tuple[int, int], std: float) -> jax.Array:
    """Gaussian matrix whose columns have norm ``std`` (the reference's normc init)."""
    w = jax.random.normal(key, shape, jnp.float32)
    return w * std / jnp.sqrt(jnp.sum(jnp.square(w), axis=0, keepdims=True))


def policy_init(key: jax.Array, spec: PolicySpec) -> jax.Array:
    """Initial flat θ (P,): normc(1.0) hidden layers, normc(0.01) output layer, zero biases."""
    shapes = spec.layer_shapes
    keys = jax.random.split(key, len(shapes))
    parts = []
    for i, (k, (n_in, n_out)) in enumerate(zip(keys, shapes)):
        std = 0.01 if i == len(shapes) - 1 else 1.0
        parts += [normc(k, (n_in, n_out), std).ravel(), jnp.zeros(n_out, jnp.float32)]
    return jnp.concatenate(parts)


def unravel(spec: PolicySpec, flat: jax.Array) -> Params:
    """Split θ (P,) into [(W, b), ...]; works on numpy and JAX arrays alike."""
    params, start = [], 0
    for n_in, n_out in spec.layer_shapes:
        w = flat[start : start + n_in * n_out].reshape(n_in, n_out)
        start += n_in * n_out
        b = flat[start : start + n_out]
        start += n_out
        params.append((w, b))
    assert start == flat.shape[0], (start, flat.shape)
    return params


def normalize_observation(ob: jax.Array, ob_mean: jax.Array, ob_std: jax.Array) -> jax.Array:
    """(ob - mean) / std clipped to [-5, 5]."""
    return jnp.clip((ob - ob_mean) / ob_std, -CLIP, CLIP)


def discretize(logits: jax.Array, spec: PolicySpec) -> jax.Array:
    """Logits (ac_dim * ac_bins,) -> actions (ac_dim,): arg-max bin mapped onto [low, high]."""
    idx = jnp.argmax(logits.reshape(spec.ac_dim, spec.ac_bins), axis=-1)
    low, high = jnp.asarray(spec.ac_low), jnp.asarray(spec.ac_high)
    return low + idx.astype(jnp.float32) / (spec.ac_bins - 1) * (high - low)


def policy_apply(
    spec: PolicySpec, params: Params, ob: jax.Array, ob_mean: jax.Array, ob_std: jax.Array
) -> jax.Array:
    """Action (ac_dim,) for one observation (ob_dim,); no action noise (the caller adds it)."""
    x = normalize_observation(ob, ob_mean, ob_std) if spec.normalize_obs else ob
    act = NONLINEARITIES[spec.nonlin]
    for w, b in params[:-1]:
        x = act(x @ w + b)
    w, b = params[-1]
    out = x @ w + b
    return discretize(out, spec) if spec.ac_bins else out
