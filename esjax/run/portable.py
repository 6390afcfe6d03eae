"""A trained policy you can take away: ``esjax.load_policy`` for JAX code, and the arrays
``python -m esjax.export`` writes as ONNX or npz for code without esjax.

Every form computes what the workers compute in a noiseless episode (``esjax.rollout.worker.act``):
observations (ob_dim,) or (N, ob_dim) -> normalized by the checkpoint's running statistics
and clipped to [-5, 5] -> the MLP (or linear map) -> the arg-max bin of each action
dimension when actions are discretized -> clipped to the env's action bounds (an infinite
output becomes NaN, not a bound). Float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from esjax.core.obstat import CLIP
from esjax.errors import ConfigError


class PortablePolicy(NamedTuple):
    """A checkpoint's policy as plain arrays: what every export holds."""

    env: str
    checkpoint: int  # the generation of the checkpoint
    layers: list[tuple[np.ndarray, np.ndarray]]  # [(W (in, out), b (out,)), ...] float32
    nonlin: str  # of the hidden layers: tanh, relu, lrelu (slope 0.2) or elu
    normalize: bool  # observations normalized by ob_mean, ob_std, clipped to +-ob_clip
    ob_mean: np.ndarray  # (ob_dim,) float32
    ob_std: np.ndarray  # (ob_dim,) float32
    ob_clip: float
    ac_bins: int  # 0: continuous actions; else bins per action dimension
    ac_low: np.ndarray  # (ac_dim,) float32, may be -inf
    ac_high: np.ndarray  # (ac_dim,) float32, may be inf

    @property
    def ob_dim(self) -> int:
        return self.ob_mean.shape[0]

    @property
    def ac_dim(self) -> int:
        return self.ac_low.shape[0]


def portable_policy(run_dir: Path, checkpoint: str | int = "best") -> PortablePolicy:
    """The policy of checkpoint ``checkpoint`` ('best', 'latest' or a generation) of
    ``run_dir``; ConfigError (one line) for a missing run or checkpoint."""
    from esjax.core.policy import unravel
    from esjax.errors import CheckpointError
    from esjax.run.state import load_run

    try:
        run = load_run(Path(run_dir), checkpoint)
    except CheckpointError as e:
        raise ConfigError(f"{run_dir}: {e}") from None
    theta, mean, std = run.policy("best" if checkpoint == "best" else "latest")
    spec = run.spec
    layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32))
              for w, b in unravel(spec, np.asarray(theta, np.float32))]  # fmt: skip
    return PortablePolicy(
        env=run.cfg.env, checkpoint=run.step, layers=layers, nonlin=spec.nonlin,
        normalize=spec.normalize_obs, ob_mean=np.asarray(mean, np.float32),
        ob_std=np.asarray(std, np.float32), ob_clip=CLIP, ac_bins=spec.ac_bins,
        ac_low=np.asarray(spec.ac_low, np.float32), ac_high=np.asarray(spec.ac_high, np.float32),
    )  # fmt: skip


def _spec(p: PortablePolicy):
    from esjax.core.policy import PolicySpec

    return PolicySpec(
        ob_dim=p.ob_dim, ac_dim=p.ac_dim, hidden_dims=tuple(w.shape[1] for w, _ in p.layers[:-1]),
        nonlin=p.nonlin, ac_low=tuple(p.ac_low.tolist()), ac_high=tuple(p.ac_high.tolist()),
        ac_bins=p.ac_bins, normalize_obs=p.normalize,
    )  # fmt: skip


class Policy:
    """A loaded policy: ``policy(obs)`` maps observations (ob_dim,) or (N, ob_dim) to
    actions (ac_dim,) or (N, ac_dim) with one jitted JAX function; ``env`` and
    ``checkpoint`` say what it is, ``arrays`` holds its weights and statistics."""

    def __init__(self, arrays: PortablePolicy):
        import jax
        import jax.numpy as jnp

        from esjax.core.policy import policy_apply

        self.arrays = arrays
        self.env, self.checkpoint = arrays.env, arrays.checkpoint
        spec = _spec(arrays)
        params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in arrays.layers]
        mean, std = jnp.asarray(arrays.ob_mean), jnp.asarray(arrays.ob_std)
        low, high = jnp.asarray(arrays.ac_low), jnp.asarray(arrays.ac_high)

        def apply(obs):
            actions = policy_apply(spec, params, jnp.asarray(obs, jnp.float32), mean, std)
            actions = jnp.where(jnp.isinf(actions), jnp.nan, actions)
            return jnp.clip(actions, low, high)

        self._apply = jax.jit(apply)

    def __call__(self, obs):
        return self._apply(obs)

    def __repr__(self) -> str:
        return f"Policy({self.env}, checkpoint {self.checkpoint})"


def load_policy(run_dir: str | Path, checkpoint: str | int = "best") -> Policy:
    """The policy of ``run_dir``'s checkpoint ('best': the θ and statistics that scored the
    best evaluation; 'latest'; or a generation number) as a jitted callable
    observations -> actions, normalization and clipping included."""
    return Policy(portable_policy(Path(run_dir), checkpoint))
