"""The optax transformation that turns a (descent) gradient into a parameter update."""

from __future__ import annotations

import optax

from esjax.core.clipup import clipup

OPTIMIZERS = ("adam", "sgd", "clipup")


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    gradient_optimizer: bool = True,
    momentum: float = 0.9,
    weight_decay: bool = True,
    l2coeff: float = 0.005,
    max_speed: float | None = None,
) -> optax.GradientTransformation:
    """Optimizer for a loss gradient (the ES trainer feeds it minus the ascent direction).

    - ``adam``: Adam(lr, 0.9, 0.999, 1e-8), as the OpenAI reference, with one
      difference: optax adds ε after the bias correction, step ``lr m̂ / (sqrt(v̂) + ε)``,
      where the starter folds the correction into the step size,
      ``lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + ε)``: its ε is in effect
      ``ε / sqrt(1 - b2^t)`` (up to 32x larger on the first step). The two agree unless
      gradients are as small as ~1e-7 in the first steps.
    - ``sgd``: momentum as in the reference, ``v <- m v + (1 - m) g``, step ``-lr v``
      (momentum 0: plain SGD, ``-lr g``: ARS's step).
    - ``clipup``: ``esjax.core.clipup`` with step ``lr``, ``momentum`` and ``max_speed``.
    - ``gradient_optimizer=False``: plain ascent, step ``-lr g``.
    Weight decay adds ``l2coeff * theta`` to the gradient first (an L2 pull toward zero)
    in every case.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; use one of {OPTIMIZERS}")
    parts = [optax.add_decayed_weights(l2coeff)] if weight_decay and l2coeff else []
    if not gradient_optimizer:
        parts.append(optax.sgd(learning_rate))
    elif name == "adam":
        parts.append(optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8))
    elif name == "clipup":
        parts.append(clipup(learning_rate, max_speed, momentum))
    else:
        parts += [optax.ema(momentum, debias=False), optax.scale(-learning_rate)]
    return optax.chain(*parts)
