"""esjax: OpenAI-style Evolution Strategies with a pure JAX core.

The pure pieces are importable from here, and ``load_policy`` (a trained policy as a
jitted function); processes, files and environments live in
``esjax.pool``, ``esjax.envs``, ``esjax.checkpoint`` and ``esjax.trainer``.

Importing esjax caps XLA's CPU code at AVX before JAX starts (``esjax.cpu_bits``): the
same update bits on every x86-64 CPU.
"""

from esjax.core import *  # noqa: F403
from esjax.core import __all__ as _core_all
from esjax.cpu_bits import XLA_ISA  # noqa: F401  (first: before JAX's backend starts)
from esjax.optim import make_optimizer
from esjax.policy import PolicySpec, policy_apply, policy_init, unravel
from esjax.portable import load_policy

__all__ = [
    *_core_all, "PolicySpec", "load_policy", "make_optimizer", "policy_apply", "policy_init",
    "unravel",
]  # fmt: skip
__version__ = "0.1.0"
