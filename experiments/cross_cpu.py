"""What changes when the CPU changes: the golden runs under other CPU code paths.

``python -m experiments.cross_cpu [--out experiments/results/cross_cpu.md]``

One machine cannot become another CPU, but the three libraries that choose code by CPU at
run time can be told to take another path on it: XLA (``--xla_cpu_max_isa``: the update's
compiled code), NumPy (``NPY_DISABLE_CPU_FEATURES``: the workers' elementwise kernels, e.g.
``tanh``) and OpenBLAS (``OPENBLAS_CORETYPE``: the kernels behind ``np.matmul``). Each
variant reruns the golden cases of ``tests/golden/record.py`` in a fresh process and is
compared bit for bit with the plain run: θ, and every deterministic log column. The
simulators (pybullet, MuJoCo) choose no code at run time; they are covered where a
variant changes what they are fed and nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

CASES = ["adam_default", "sgd_options", "pybullet_ars", "mujoco_pgpe_resume"]

# name -> environment of the variant's process (on top of this process's).
VARIANTS = {
    "plain": {},
    "XLA SSE4.2 (a CPU without AVX)": {"XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2"},
    "XLA uncapped (AVX-512 + FMA here)": {"XLA_FLAGS": "--xla_cpu_max_isa=AVX512"},
    "XLA AVX2 + FMA": {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"},
    "NumPy without AVX-512": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    "NumPy without AVX2/AVX-512": {
        "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
    },
    "OpenBLAS Haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "OpenBLAS Sandybridge": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "OpenBLAS Prescott": {"OPENBLAS_CORETYPE": "Prescott"},
}


NOTES = """
How to read it: "plain" is this machine's own code path, the reference. A row with
"none" twice computes the same bits as the reference. The rows that differ are code
paths no esjax run takes: jaxlib refuses CPUs without AVX (its cpu_feature_guard), so
"XLA SSE4.2" exists only as a flag; XLA with AVX2 or AVX-512 is what esjax's cap
(esjax.cpu_bits) prevents: with FMA, products are added with one rounding instead of two.

Before the change (commit 0468f65, same machine and cases): OpenBLAS's Haswell,
Sandybridge and Prescott kernels and NumPy without AVX2 each changed the returns of
adam_default and mujoco_pgpe_resume (GenRewMean, GenRewMax, evaluations); XLA limited to
AVX or SSE4.2 changed θ in all four cases; and on an Intel Xeon with AVX-512 (issue 28)
mujoco_pgpe_resume's UpdateRatio differed from the record made on another CPU (XLA's norm,
vectorized for the CPU it compiled on).
"""


def _run_cases(out: Path) -> None:
    """Child process: run every case (inline backend) and save its columns and θ."""
    from tests.golden.record import columns, run_case

    arrays = {}
    for name in CASES:
        rows, theta = run_case(name, backend="inline", num_workers=1, envs_per_worker=2)
        arrays[f"{name}/columns"] = columns(rows)
        arrays[f"{name}/theta"] = theta
    np.savez(out, **arrays)


def _variant(name: str, env: dict, scratch: Path) -> dict[str, np.ndarray]:
    out = scratch / f"{abs(hash(name))}.npz"
    # The variant's own compilation cache: a cached executable would hide its ISA.
    cache = scratch / f"xla-{abs(hash(name))}"
    full_env = {**os.environ, **env, "JAX_COMPILATION_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "experiments.cross_cpu", "--child", str(out)]
    subprocess.run(cmd, env=full_env, check=True, stdout=subprocess.DEVNULL)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def _compare(base: dict, other: dict) -> tuple[list[str], list[str]]:
    """(cases whose θ differs, '<case>: <columns>' whose log columns differ)."""
    from tests.golden.record import COLUMNS

    theta, cols = [], []
    for name in CASES:
        if not np.array_equal(base[f"{name}/theta"], other[f"{name}/theta"], equal_nan=True):
            theta.append(name)
        a, b = base[f"{name}/columns"], other[f"{name}/columns"]
        differ = [
            c for i, c in enumerate(COLUMNS) if not np.array_equal(a[:, i], b[:, i], equal_nan=True)
        ]
        if differ:
            cols.append(f"{name}: {', '.join(differ)}")
    return theta, cols


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="experiments/results/cross_cpu.md")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _run_cases(Path(args.child))
        return
    import tempfile

    from esjax.provenance import git_commit, machine

    with tempfile.TemporaryDirectory() as tmp:
        results = {name: _variant(name, env, Path(tmp)) for name, env in VARIANTS.items()}
    base = results["plain"]
    lines = [
        "# The golden runs under other CPU code paths (`python -m experiments.cross_cpu`)",
        "",
        f"Machine: {machine()}; commit {git_commit()}.",
        f"Cases: {', '.join(CASES)} (tests/golden/record.py), inline backend.",
        "",
        "| variant | environment | θ differs in | log columns differ in |",
        "| --- | --- | --- | --- |",
    ]
    summary = {}
    for name, env in VARIANTS.items():
        theta, cols = _compare(base, results[name])
        summary[name] = {"theta": theta, "columns": cols}
        env_text = " ".join(f"`{k}={v}`" for k, v in env.items()) or "-"
        lines.append(f"| {name} | {env_text} | {', '.join(theta) or 'none'} | "
                     f"{'; '.join(cols) or 'none'} |")  # fmt: skip
    text = "\n".join(lines) + "\n" + NOTES
    print(text)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
