"""The type checker reads the seams (messages, the pool protocols and their backends, the
dispatcher, the trainer, the test fakes): ``make lint`` runs it, and a fake or backend
that drifts from the protocol fails there, not in a user's run."""

import textwrap
import tomllib
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

pytestmark = pytest.mark.slow  # mypy from a cold cache: ~15 s
ROOT = Path(__file__).resolve().parent.parent

DRIFTED = """
    from esjax.rollout.dispatch import Dispatcher

    class DriftedPool:
        envs_per_worker = 1

        def workers(self) -> list[int]:
            return [0]

        def send(self, worker, ep, extra) -> None:
            pass

        def recv(self, timeout):
            return None

    Dispatcher(DriftedPool())
"""


def test_the_seams_type_check_and_a_drifted_pool_is_reported(tmp_path):
    """One mypy run over make lint's files and a pool that lost ``restart`` and changed
    ``send``: only the drifted pool is reported, naming the protocol and both members."""
    seams = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    drifted = tmp_path / "drifted.py"
    drifted.write_text(textwrap.dedent(DRIFTED))
    out, err, code = mypy_api.run(["--config-file", str(ROOT / "pyproject.toml"),
                                   "--cache-dir", str(tmp_path / "cache"),
                                   *(str(ROOT / f) for f in seams), str(drifted)])  # fmt: skip
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert code == 1 and errors and all(line.startswith(str(drifted)) for line in errors), out
    assert '"DriftedPool" is missing following "EpisodeQueues" protocol member' in out
    assert "restart" in out and "def send(self, worker: int, ep: Episode) -> None" in out
