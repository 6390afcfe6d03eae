"""esjax: OpenAI-style Evolution Strategies with a pure JAX core.

The pure pieces are importable from here, and ``load_policy`` (a trained policy as a
jitted function); processes, files and environments live in
``esjax.pool``, ``esjax.envs``, ``esjax.checkpoint`` and ``esjax.trainer``.
"""

from esjax.core import *  # noqa: F403
from esjax.core import __all__ as _core_all
from esjax.optim import make_optimizer
from esjax.policy import PolicySpec, policy_apply, policy_init, unravel
from esjax.portable import load_policy

__all__ = [
    *_core_all, "PolicySpec", "load_policy", "make_optimizer", "policy_apply", "policy_init",
    "unravel",
]  # fmt: skip
__version__ = "0.1.0"
