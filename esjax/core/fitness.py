"""Fitness shaping: pure functions from raw returns to the weights of the gradient.

All functions take a ``mask`` (bool, same shape as the returns) so that callers can pad
to a fixed size and avoid recompiling when the number of episodes changes. Padded
entries get weight 0 and take no part in the ranking.
"""

from __future__ import annotations

import jax.numpy as jnp

RETURN_PROC_MODES = ("centered_rank", "sign", "centered_sign_rank")


def ranks(x: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """Ranks in [0, n) of the valid entries of ``x`` (any shape), ties averaged.

    Tied values share the mean of the ranks they span, so equal returns get equal
    weight (the OpenAI reference broke ties by sort order instead). Masked-out
    entries get rank 0 and must be ignored by the caller.
    """
    flat = x.ravel().astype(jnp.float32)
    valid = jnp.ones_like(flat, dtype=bool) if mask is None else mask.ravel()
    keyed = jnp.where(valid, flat, jnp.inf)
    srt = jnp.sort(keyed)
    lo = jnp.searchsorted(srt, keyed, side="left")
    hi = jnp.searchsorted(srt, keyed, side="right")
    r = (lo + hi - 1).astype(jnp.float32) / 2.0
    return jnp.where(valid, r, 0.0).reshape(x.shape)


def centered_ranks(x: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """Ranks scaled to [-0.5, 0.5]: ``rank / (n - 1) - 0.5``; 0 where masked or n == 1."""
    valid = jnp.ones(x.shape, dtype=bool) if mask is None else mask
    n = valid.sum()
    r = ranks(x, valid)
    y = r / jnp.maximum(n - 1, 1).astype(jnp.float32) - 0.5
    return jnp.where(valid & (n > 1), y, 0.0)


def shape_returns(
    returns: jnp.ndarray,
    sign_returns: jnp.ndarray,
    mask: jnp.ndarray,
    mode: str,
    fitness_shaping: bool,
) -> jnp.ndarray:
    """Shaped fitness per episode, same shape as ``returns`` (N, 2) or (N, 1).

    ``returns``: episode returns; ``sign_returns``: sum over steps of sign(reward).
    Without fitness shaping the raw returns are used. ``mode`` is one of
    ``RETURN_PROC_MODES``: centered ranks of returns, raw sign sums, or centered ranks
    of sign sums.
    """
    if not fitness_shaping:
        shaped = returns.astype(jnp.float32)
    elif mode == "centered_rank":
        shaped = centered_ranks(returns, mask)
    elif mode == "sign":
        shaped = sign_returns.astype(jnp.float32)
    elif mode == "centered_sign_rank":
        shaped = centered_ranks(sign_returns, mask)
    else:
        raise ValueError(f"unknown return_proc_mode {mode!r}; use one of {RETURN_PROC_MODES}")
    return jnp.where(mask, shaped, 0.0)


def noise_weights(shaped: jnp.ndarray) -> jnp.ndarray:
    """Weight of each noise vector, shape (N,): w+ - w- for mirrored pairs (N, 2), else w."""
    if shaped.shape[-1] == 2:
        return shaped[:, 0] - shaped[:, 1]
    return shaped[:, 0]
