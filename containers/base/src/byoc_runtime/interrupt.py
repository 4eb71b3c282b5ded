"""SIGTERM inside training code (spot interruption, StopTrainingJob).

By default SIGTERM raises TrainingInterrupted at once. A trainer that checkpoints on its own calls
`cooperate()` and then polls `requested()` between steps, saves, and returns.
"""

from __future__ import annotations

import signal
import threading

_requested = threading.Event()
_cooperative = False


class TrainingInterrupted(BaseException):
    """Raised in the main thread on SIGTERM when the trainer does not cooperate."""


def install() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)


def cooperate() -> None:
    global _cooperative
    _cooperative = True


def requested() -> bool:
    return _requested.is_set()


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _requested.set()
    if not _cooperative:
        raise TrainingInterrupted("stopped by SIGTERM")
