"""Silencing output that C code (pybullet, tensorstore) writes straight to fds 1 and 2."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

_libc = ctypes.CDLL(None)


@contextlib.contextmanager
def silenced_stdout():
    """Send file descriptors 1 and 2 to /dev/null meanwhile (pybullet's ``pybullet build
    time``, a failed checkpoint write's background tracebacks); exceptions propagate."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _libc.fflush(None)  # C stdio buffers too, or the text reappears later
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
        os.close(devnull)
