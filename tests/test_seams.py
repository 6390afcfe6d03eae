"""The type checker reads the seams (messages, the pool protocols and their backends, the
dispatcher, the trainer, the test fakes): ``make lint`` runs it, and a fake or backend
that drifts from the protocol fails there, not in a user's run."""

import textwrap

import pytest

mypy_api = pytest.importorskip("mypy.api")

pytestmark = pytest.mark.integration  # mypy takes ~10 s from a cold cache


def mypy(*args: str) -> tuple[str, int]:
    out, err, code = mypy_api.run(list(args))
    return out + err, code


def test_the_seams_type_check():
    out, code = mypy()  # the files of [tool.mypy] in pyproject.toml
    assert code == 0, out


def test_a_pool_that_drifts_from_the_protocol_is_reported(tmp_path):
    drifted = tmp_path / "drifted.py"
    drifted.write_text(
        textwrap.dedent("""
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
    """)
    )
    out, code = mypy("--ignore-missing-imports", "--follow-imports=silent",
                     "--cache-dir", str(tmp_path / "cache"), str(drifted))  # fmt: skip
    assert code == 1
    assert '"DriftedPool" is missing following "EpisodeQueues" protocol member' in out
    assert "restart" in out and "def send(self, worker: int, ep: Episode) -> None" in out
