"""Loads the model once per worker, after fork, in the background so /ping can answer 503 meanwhile.

Under `serve`, a model that cannot be loaded stops the server: the worker logs the trace, sends the reason to
the gunicorn master through a pipe (`listen_for_failures`, set up by serve before the workers are forked) and
exits with gunicorn's worker-boot-error code, so the master stops every worker instead of starting another one
that would fail the same way; serve then logs the reason as its last line and exits 3. An endpoint that can never
become healthy fails at once, with its reason, rather than after SageMaker's health-check window. A worker that
dies any other way (killed, out of memory) is restarted as before.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

from .errors import ModelNotReady

log = logging.getLogger(__name__)
LOAD_FAILED_EXIT = 3  # gunicorn's Arbiter.WORKER_BOOT_ERROR: the master halts rather than respawning
HALT_UNDER_WAY_EXIT = 5  # a worker that failed too, after another one had already stopped the server
_MAX_REASON_BYTES = 3000  # below PIPE_BUF (4096): one worker's report is written at once, never interleaved
# Set by serve before the workers are forked (so they inherit them): the write end of the pipe that carries the
# reasons to the master, and the read end of a pipe holding one byte, the right to stop the server. gunicorn's
# master halts on every boot-error exit it reaps, and a second one reaped while it is stopping escapes as a
# traceback; so only the worker that reads the byte exits with the boot-error code.
_reasons: int | None = None
_halt_token: int | None = None


def listen_for_failures() -> int:
    """Set up the pipes (in serve, before forking); returns the end the master reads reasons from."""
    global _reasons, _halt_token
    read_reasons, _reasons = os.pipe()
    os.set_blocking(read_reasons, False)
    _halt_token, token_writer = os.pipe()
    os.set_blocking(_halt_token, False)
    os.write(token_writer, b"!")
    os.close(token_writer)
    return read_reasons


def read_failures(fd: int) -> list[str]:
    """What the workers reported on the read end of the pipe (non-blocking), oldest first."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # BlockingIOError: nothing (more) to read
            break
        if not chunk:
            break
        chunks.append(chunk)
    return [line for line in b"".join(chunks).decode("utf-8", "replace").splitlines() if line.strip()]


def fail_worker(reason: str) -> NoReturn:
    """End this worker process because it cannot serve: tell the master why, and stop the server (the first
    worker to fail) or just exit (the others). os._exit: may run in the loader thread; nothing to unwind."""
    first = _take_halt_token()
    if _reasons is not None:
        line = " ".join(reason.split()).encode("utf-8", "replace")[:_MAX_REASON_BYTES] + b"\n"
        try:
            os.write(_reasons, line)
        except OSError:
            pass
    code = LOAD_FAILED_EXIT if first else HALT_UNDER_WAY_EXIT
    log.error("stopping this worker (exit %d): %s", code, reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)


def _take_halt_token() -> bool:
    if _halt_token is None:
        return True  # not under serve's master: nobody else to defer to
    try:
        return os.read(_halt_token, 1) == b"!"
    except OSError:  # BlockingIOError: another worker has it
        return False


class ModelHolder:
    def __init__(self, load: Callable[[], Any], *, exit_on_failure: bool = False):
        self._load = load
        self._exit_on_failure = exit_on_failure
        self._loaded = threading.Event()
        self._model: Any = None
        self.error: str | None = None
        self.load_seconds: float | None = None

    def start(self, background: bool = True) -> ModelHolder:
        if background:
            threading.Thread(target=self._run, name="model-loader", daemon=True).start()
        else:
            self._run()
        return self

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            self._model = self._load()
            self.load_seconds = time.perf_counter() - started
            log.info("model loaded in %.2f s", self.load_seconds)
        except Exception as err:  # noqa: BLE001 - reported through /ping and the log, or the process ends
            self.error = f"{type(err).__name__}: {err}"
            log.exception("loading the model failed")
            if self._exit_on_failure:
                fail_worker(f"the model could not be loaded: {self.error}")
        finally:
            self._loaded.set()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self.error is None

    def get(self, wait: float) -> Any:
        """The model, waiting up to `wait` seconds for the load to finish."""
        if not self._loaded.wait(wait):
            raise ModelNotReady("The model is still loading; retry shortly")
        if self.error is not None:
            raise ModelNotReady(f"The model failed to load: {self.error}")
        return self._model
