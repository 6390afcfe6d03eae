"""The same update bits on every x86-64 CPU: XLA's CPU code is capped at AVX.

XLA compiles for the CPU it runs on, and on CPUs with FMA (Intel since Haswell, AMD
since Piledriver) it fuses ``a * b + c`` into one rounding instead of two: Adam's and
ClipUp's elementwise steps then differ in their last bits between a CPU with FMA and
one without, or with XLA told to use less. Capping XLA at AVX (no FMA, no AVX2 or
AVX-512) gives every x86-64 CPU with AVX (2011 on) the same code path for the update:
bit-identical θ across them (experiments/cross_cpu.py). The update is a small share of
a generation's time, so the cap costs little (BENCHMARKS.md).

The cap is set in ``XLA_FLAGS`` when esjax is imported, before JAX starts its CPU
backend, and left alone where the user's ``XLA_FLAGS`` already names
``--xla_cpu_max_isa`` (theirs wins, and the run records it).
"""

from __future__ import annotations

import os

ISA_FLAG = "--xla_cpu_max_isa"
PINNED_ISA = "AVX"


def pin_xla_cpu_isa() -> str:
    """Cap XLA's CPU code at AVX unless the user chose a cap; returns what holds:
    'AVX' (pinned by esjax), 'user: <flag>' (the user's cap), or 'unpinned' (JAX's
    backend had started before esjax was imported: too late to cap it)."""
    flags = os.environ.get("XLA_FLAGS", "")
    user = [f for f in flags.split() if f.startswith(ISA_FLAG)]
    if user:
        return f"user: {user[-1]}"
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return "unpinned"
    os.environ["XLA_FLAGS"] = f"{flags} {ISA_FLAG}={PINNED_ISA}".strip()
    return PINNED_ISA


XLA_ISA = pin_xla_cpu_isa()
