"""The failure file: SageMaker shows its first 1024 characters as the job's FailureReason."""

from __future__ import annotations

import logging
from pathlib import Path

from .paths import SageMakerPaths

log = logging.getLogger(__name__)
REASON_LIMIT = 1024


def write_failure(reason: str, detail: str = "", paths: SageMakerPaths | None = None) -> Path:
    """Write `reason` (first line: what the user must fix) and optional detail below it."""
    paths = paths or SageMakerPaths.from_env()
    text = reason.strip() + ("\n\n" + detail.strip() if detail.strip() else "") + "\n"
    try:
        paths.failure_file.parent.mkdir(parents=True, exist_ok=True)
        paths.failure_file.write_text(text)
    except OSError as err:  # never hide the original failure behind an I/O error
        log.error("could not write %s: %s", paths.failure_file, err)
    log.error("training failed: %s", reason.strip().splitlines()[0] if reason.strip() else reason)
    return paths.failure_file


def failure_written(paths: SageMakerPaths | None = None) -> bool:
    paths = paths or SageMakerPaths.from_env()
    return paths.failure_file.exists() and paths.failure_file.stat().st_size > 0
