"""esjax: OpenAI-style Evolution Strategies with a pure JAX core.

The pure pieces are importable from here, and ``load_policy`` (a trained policy as a
jitted function). The package's floors, bottom up: ``errors`` (every error type users
catch), ``config`` (the options), ``core`` (pure JAX: noise, fitness shaping, the
strategies and their registry, policy, optimizers), ``rollout`` (envs, workers and the
backends that run episodes), ``run`` (state, checkpoints, run directory, log, trackers),
``trainer`` (the loop) and the commands (``train``, ``evaluate``, ``export``, ``plot``,
``seeds``, ``cli``), each run as ``python -m esjax.NAME``.

Importing esjax caps XLA's CPU code at AVX before JAX starts (``esjax.cpu_bits``): the
same update bits on every x86-64 CPU.
"""

from esjax.core import *  # noqa: F403
from esjax.core import __all__ as _core_all
from esjax.core.optim import make_optimizer
from esjax.core.policy import PolicySpec, policy_apply, policy_init, unravel
from esjax.cpu_bits import XLA_ISA  # noqa: F401  (first: before JAX's backend starts)
from esjax.run.portable import load_policy

__all__ = [
    *_core_all, "PolicySpec", "load_policy", "make_optimizer", "policy_apply", "policy_init",
    "unravel",
]  # fmt: skip
__version__ = "0.1.0"
