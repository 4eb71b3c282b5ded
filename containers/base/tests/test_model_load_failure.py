"""A model that cannot be loaded under `serve`: the worker reports why and exits with gunicorn's boot-error code
(only the first one: a second boot error reaped while gunicorn stops escapes as a traceback), the master reads
the reason. In-process apps (tests) keep answering 503 with the reason instead."""

from __future__ import annotations

import os
import time

import pytest

from byoc_runtime import model_holder
from byoc_runtime.model_holder import HALT_UNDER_WAY_EXIT, LOAD_FAILED_EXIT, ModelHolder


def _failing_load():
    raise FileNotFoundError("/opt/ml/model/model.npz")


def _child_exit_code(target) -> int:
    pid = os.fork()
    if pid == 0:  # the child: must never return into pytest
        try:
            target()
        finally:
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def reasons():
    fd = model_holder.listen_for_failures()
    yield fd
    model_holder._reasons = model_holder._halt_token = None


def test_first_failing_worker_halts_the_server_the_next_ones_just_exit(reasons):
    holder = lambda: ModelHolder(_failing_load, exit_on_failure=True).start(background=True)  # noqa: E731

    def load_and_wait():
        holder()
        time.sleep(10)  # the loader thread ends the process long before

    assert _child_exit_code(load_and_wait) == LOAD_FAILED_EXIT
    assert _child_exit_code(load_and_wait) == HALT_UNDER_WAY_EXIT
    lines = model_holder.read_failures(reasons)
    assert lines == ["the model could not be loaded: FileNotFoundError: /opt/ml/model/model.npz"] * 2


def test_reasons_are_one_line_each_and_bounded(reasons):
    assert _child_exit_code(lambda: model_holder.fail_worker("line one\nline two " + "x" * 10_000)) == LOAD_FAILED_EXIT
    (line,) = model_holder.read_failures(reasons)
    assert line.startswith("line one line two x") and len(line) <= 3000
    assert model_holder.read_failures(reasons) == []  # nothing more; does not block


def test_in_process_the_failure_stays_on_ping():
    holder = ModelHolder(_failing_load).start(background=False)
    assert not holder.ready and holder.error == "FileNotFoundError: /opt/ml/model/model.npz"
