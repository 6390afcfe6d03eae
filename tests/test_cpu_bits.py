"""XLA's CPU code is capped at AVX when esjax is imported (esjax.cpu_bits), so the update
rounds every product before adding it on any CPU: no FMA, whose single rounding is what
made θ differ between CPUs with and without it (experiments/results/cross_cpu.md)."""

import jax
import numpy as np

import esjax  # noqa: F401  (pins the cap)
from esjax.cpu_bits import XLA_ISA


def test_xla_is_capped_at_avx_in_an_esjax_process():
    assert XLA_ISA == "AVX"


def test_the_update_rounds_products_before_adding_them():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(10_000).astype(np.float32) for _ in range(3))
    two_roundings = a * b + c  # NumPy rounds a * b, then the sum
    fused = (a.astype(np.float64) * b + c).astype(np.float32)
    assert not np.array_equal(two_roundings, fused)  # the case can tell them apart
    np.testing.assert_array_equal(jax.jit(lambda a, b, c: a * b + c)(a, b, c), two_roundings)
