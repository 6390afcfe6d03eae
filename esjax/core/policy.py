"""MLP policy as pure functions on a flat parameter vector.

The flat vector θ (P,) is what ES perturbs; it is turned into layer weights only here
(``unravel``), once per episode in the workers, never per step.

``policy_apply`` is the JAX form (jit/vmap/grad it). ``policy_apply_np`` is the same
network in NumPy, batched over per-row weights: the workers' per-step path. A jitted
call hands its work to XLA's thread pool; beside a running simulator that hand-off cost
about 100 µs per call on the 2-core dev machine, against 25-30 µs for the NumPy forward
pass on the calling thread (benchmarks/policy_step.py).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from esjax.core.obstat import CLIP

# The OpenAI starter's lrelu(x, leak=0.2) (and the seed notebook's tf.nn.leaky_relu,
# whose default alpha is 0.2): max(x, 0.2 x).
LRELU_LEAK = 0.2
NONLINEARITIES = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "lrelu": lambda x: jax.nn.leaky_relu(x, negative_slope=LRELU_LEAK),
    "elu": jax.nn.elu,
}


def _float64_then_float32(fn):
    """``fn`` evaluated in float64 and rounded to float32: NumPy's float32 ``tanh`` and
    ``expm1`` take another code path on CPUs without AVX2 (other last bits); their float64
    results rounded to float32 are the same on every CPU (experiments/cross_cpu.py)."""
    return lambda x: fn(np.asarray(x, np.float64)).astype(np.float32)


_np_tanh = _float64_then_float32(np.tanh)
_np_expm1 = _float64_then_float32(np.expm1)
NUMPY_NONLINEARITIES = {
    "tanh": _np_tanh,
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "lrelu": lambda x: np.where(x >= 0, x, np.float32(LRELU_LEAK) * x),
    "elu": lambda x: np.where(x > 0, x, _np_expm1(np.minimum(x, np.float32(0)))),
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


OUTPUT_INIT_STD = 0.01  # the reference's: initial actions near zero


def policy_init(key: jax.Array, spec: PolicySpec, output_std: float = OUTPUT_INIT_STD) -> jax.Array:
    """Initial flat θ (P,): normc(1.0) hidden layers, normc(``output_std``) output layer,
    zero biases; a linear policy (no hidden layer) starts at zero, as in ARS."""
    shapes = spec.layer_shapes
    if not spec.hidden_dims:
        return jnp.zeros(spec.num_params, jnp.float32)
    keys = jax.random.split(key, len(shapes))
    parts = []
    for i, (k, (n_in, n_out)) in enumerate(zip(keys, shapes)):
        std = output_std if i == len(shapes) - 1 else 1.0
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


def normalize_observation(ob, ob_mean, ob_std, xp=jnp):
    """(ob - mean) / std clipped to [-5, 5]; ``xp`` is jax.numpy or numpy."""
    return xp.clip((ob - ob_mean) / ob_std, -CLIP, CLIP)


def discretize(logits, spec: PolicySpec, xp=jnp):
    """Logits (..., ac_dim * ac_bins) -> actions (..., ac_dim): arg-max bin mapped
    uniformly onto [low, high]."""
    idx = xp.argmax(logits.reshape(*logits.shape[:-1], spec.ac_dim, spec.ac_bins), axis=-1)
    low = xp.asarray(spec.ac_low, xp.float32)
    high = xp.asarray(spec.ac_high, xp.float32)
    return low + idx.astype(xp.float32) / (spec.ac_bins - 1) * (high - low)


def _forward(spec: PolicySpec, params, ob, ob_mean, ob_std, xp, nonlinearities):
    """The network for one observation (ob_dim,) with weights [(W (in, out), b (out,))],
    or for a batch (K, ob_dim) with per-row weights [(W (K, in, out), b (K, out))]."""
    x = normalize_observation(ob, ob_mean, ob_std, xp) if spec.normalize_obs else ob
    act = nonlinearities[spec.nonlin]
    for w, b in params[:-1]:
        x = act((x[..., None, :] @ w)[..., 0, :] + b)
    w, b = params[-1]
    out = (x[..., None, :] @ w)[..., 0, :] + b
    return discretize(out, spec, xp) if spec.ac_bins else out


def policy_apply(
    spec: PolicySpec, params: Params, ob: jax.Array, ob_mean: jax.Array, ob_std: jax.Array
) -> jax.Array:
    """Action (ac_dim,) for one observation (ob_dim,); no action noise (the caller adds it)."""
    return _forward(spec, params, ob, ob_mean, ob_std, jnp, NONLINEARITIES)


# In place on a fresh layer output: the same values as NUMPY_NONLINEARITIES, no new array
_NUMPY_IN_PLACE = {
    "relu": lambda x: np.maximum(x, np.float32(0), out=x),
}


def _dense(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` for x (..., in) and w (..., in, out) -> (..., out) float32, without BLAS:
    BLAS kernels are chosen by CPU at run time (other summation orders, other last bits),
    NumPy's einsum loops are the same on every CPU (experiments/cross_cpu.py)."""
    return np.einsum("...i,...io->...o", x, w)


def policy_apply_np(
    spec: PolicySpec, params, obs: np.ndarray, ob_mean: np.ndarray, ob_std: np.ndarray
) -> np.ndarray:
    """NumPy ``policy_apply``: actions (K, ac_dim) for observations (K, ob_dim), row k
    with its own weights [(W (K, in, out), b (K, out)), ...]; also takes one observation
    (ob_dim,) with unbatched weights. All float32; no action noise.

    The same operations as ``_forward``, each writing into the array the previous one
    made where it can (the workers call it every step, and at these sizes a NumPy call's
    fixed cost is most of its time), with kernels whose bits do not depend on the CPU:
    no BLAS, float64 transcendentals rounded to float32."""
    if spec.normalize_obs:
        x = np.subtract(obs, ob_mean)
        np.divide(x, ob_std, out=x)
        np.maximum(x, -CLIP, out=x)  # np.clip's values, without its Python wrapper
        np.minimum(x, CLIP, out=x)
    else:
        x = obs
    act = _NUMPY_IN_PLACE.get(spec.nonlin) or NUMPY_NONLINEARITIES[spec.nonlin]
    for w, b in params[:-1]:
        y = _dense(x, w)
        x = act(np.add(y, b, out=y))
    w, b = params[-1]
    out = _dense(x, w)
    np.add(out, b, out=out)
    return discretize(out, spec, np) if spec.ac_bins else out
