"""Pure core of esjax: no I/O, no processes, no environments. JAX functions, except
``obstat`` (NumPy, float64: the trainer merges the workers' sums there) and
``fill_noise_table`` (NumPy: it fills the shared table in place).

Strategies, each an ``ES(init, ask, tell, sigma)`` on the shared noise table:
``make_es`` (OpenAI-ES), ``make_ars`` (ARS V2-t), ``make_pgpe`` (PGPE, σ per parameter);
``clipup`` is an optax transform any of them can use. The trainer calls ``tell`` (jitted)
once per generation; it does not call ``ask``: its workers run episodes named by the
units of ``esjax.core.schedule``, whose offsets come from the same ``sample_offsets``.
``ask`` (and ``esjax.core.policy.policy_apply`` in JAX) are the research API: a whole ES loop
in JAX for a function you can evaluate in JAX (experiments/toy_objective.py).
"""

from esjax.core.ars import make_ars, top_directions_mask
from esjax.core.clipup import ClipUpState, clipup
from esjax.core.es import ES, ESState, TellInfo, make_es
from esjax.core.fitness import (
    RETURN_PROC_MODES,
    centered_ranks,
    noise_weights,
    ranks,
    shape_returns,
)
from esjax.core.gradient import es_gradient, weighted_noise_sum
from esjax.core.noise import (
    fill_noise_table,
    get_noise,
    get_noise_batch,
    perturb,
    sample_offsets,
)
from esjax.core.obstat import (
    ObStat,
    obstat_from_batch,
    obstat_init,
    obstat_mean_std,
    obstat_merge,
)
from esjax.core.pgpe import PGPEState, make_pgpe, pgpe_gradients
from esjax.core.reduce import ordered_mean, ordered_norm, ordered_sum

__all__ = [
    "ClipUpState",
    "ES",
    "ESState",
    "PGPEState",
    "clipup",
    "make_ars",
    "make_pgpe",
    "ordered_mean",
    "ordered_norm",
    "ordered_sum",
    "pgpe_gradients",
    "top_directions_mask",
    "ObStat",
    "RETURN_PROC_MODES",
    "TellInfo",
    "centered_ranks",
    "es_gradient",
    "fill_noise_table",
    "get_noise",
    "get_noise_batch",
    "make_es",
    "noise_weights",
    "obstat_from_batch",
    "obstat_init",
    "obstat_mean_std",
    "obstat_merge",
    "perturb",
    "ranks",
    "sample_offsets",
    "shape_returns",
    "weighted_noise_sum",
]
