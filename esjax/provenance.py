"""Where a result was measured: this machine and the checkout's commit (for results files)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    """CPU model, cores, memory and OS of this machine, in one line."""
    cpu = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.platform()}"


def git_commit(repo: Path = REPO) -> str:
    """The checkout's short commit, with '+dirty' when tracked files have changes;
    an installed wheel's BUILD_COMMIT (the commit it was built from); else 'unknown'."""
    built = Path(__file__).resolve().parent / "BUILD_COMMIT"  # written into a wheel only
    if built.is_file():
        return built.read_text().strip()
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True).stdout.strip()  # fmt: skip
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# What a run's bits depend on besides its config (docs/reproducibility.md): the
# architecture, XLA's CPU cap (the update) and these packages' versions (the update, the
# workers' NumPy, the simulators). The CPU model is recorded but does not change results.
RESULT_PACKAGES = ("jax", "jaxlib", "numpy", "optax", "gymnasium", "mujoco", "pybullet")
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f")


def _cpu() -> tuple[str, list[str]]:
    """(CPU model, which of CPU_FLAGS it has) from /proc/cpuinfo (Linux), else platform."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return model, [f for f in CPU_FLAGS if f in flags]


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine_record() -> dict:
    """This process's machine as JSON-ready data: host, CPU model and vector extensions,
    architecture, XLA's CPU cap (``esjax.cpu_bits``) and the versions in RESULT_PACKAGES."""
    from esjax.cpu_bits import XLA_ISA

    model, flags = _cpu()
    return {
        "host": platform.node(),
        "cpu": model,
        "cpu_flags": flags,
        "arch": platform.machine(),
        "xla_cpu_isa": XLA_ISA,
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in RESULT_PACKAGES},
    }


def result_differences(a: dict, b: dict) -> list[str]:
    """What differs between two machine records in what can change a run's bits
    ('numpy 2.4.6 -> 2.5.0', ...); [] when they would compute the same bits."""
    out = [f"{k} {a.get(k)} -> {b.get(k)}" for k in ("arch", "xla_cpu_isa") if a.get(k) != b.get(k)]
    pa, pb = a.get("packages", {}), b.get("packages", {})
    out += [f"{p} {pa.get(p)} -> {pb.get(p)}" for p in RESULT_PACKAGES if pa.get(p) != pb.get(p)]
    return out
