"""The failure file: SageMaker shows its first 1024 characters as the job's FailureReason."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

from . import atomic
from .paths import SageMakerPaths

log = logging.getLogger(__name__)
REASON_LIMIT = 1024


def write_failure(reason: str, detail: str = "", paths: SageMakerPaths | None = None) -> Path:
    """Write `reason` (first line: what the user must fix) and optional detail below it."""
    paths = paths or SageMakerPaths.from_env()
    text = reason.strip() + ("\n\n" + detail.strip() if detail.strip() else "") + "\n"
    try:
        paths.failure_file.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(paths.failure_file, text)  # a reader never sees half a reason
    except OSError as err:  # never hide the original failure behind an I/O error
        log.error("could not write %s: %s", paths.failure_file, err)
        if err.errno in atomic.DISK_FULL_ERRNOS:  # no room for a second copy: the reason alone, in place
            try:
                paths.failure_file.write_text(reason.strip()[:REASON_LIMIT] + "\n")
            except OSError:
                pass
    log.error("training failed: %s", reason.strip().splitlines()[0] if reason.strip() else reason)
    return paths.failure_file


def failure_written(paths: SageMakerPaths | None = None) -> bool:
    paths = paths or SageMakerPaths.from_env()
    return paths.failure_file.exists() and paths.failure_file.stat().st_size > 0


def disk_full_reason(err: BaseException) -> str | None:
    """The failure file's first line for a write that failed because the volume is full, naming the file
    ("No space left on device while writing /opt/ml/model/model.npz"); None for any other failure."""
    full = atomic.disk_full_error(err)
    if full is None:
        return None
    what = "Disk quota exceeded" if getattr(full, "errno", None) == errno.EDQUOT else "No space left on device"
    target = getattr(full, "filename", None)
    if target:
        where = f"while writing {target}"
    else:  # a framework error without a file name: its first line is the best we have
        where = "while writing: " + (str(full).strip().splitlines() or [type(full).__name__])[0][:300]
    return f"{what} {where} ({_volume_hint(str(target or ''))})"


def _volume_hint(target: str) -> str:
    paths = SageMakerPaths.from_env()
    if target.startswith(str(paths.model_dir)):
        return "the model directory's volume is full: raise VolumeSizeInGB or write a smaller model"
    if target.startswith(str(paths.base / "checkpoints")):
        return "the checkpoint volume is full: raise VolumeSizeInGB or keep fewer checkpoints (BYOC_CHECKPOINTS_KEPT)"
    return "free space on that volume or raise the job's VolumeSizeInGB"
