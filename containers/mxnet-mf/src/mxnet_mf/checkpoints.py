"""Per-epoch checkpoints in /opt/ml/checkpoints (SageMaker syncs it with S3), and resuming from them.

byoc_runtime's CheckpointStore keeps the newest three as mxnet_mf-<epoch>/ directories: mxnet_mf.params
(weights), mxnet_mf.states (optimizer state, single host only: a dist kvstore keeps it on the servers, where
MXNet cannot save it) and MANIFEST.json, written last, with the epoch, the model's signature, the history,
and the size and sha256 of each file. Resuming takes the newest checkpoint that is intact and was written
for the same model and data shape; each one skipped is logged with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from byoc_runtime.checkpoints import CheckpointStore, SkipCheckpoint

log = logging.getLogger(__name__)
NAME = "mxnet_mf"
PARAMS, STATES = f"{NAME}.params", f"{NAME}.states"


@dataclass(frozen=True)
class Checkpoint:
    epoch: int  # epochs completed
    params: Path
    states: Path | None
    history: list[dict[str, Any]]


def store(directory: Path) -> CheckpointStore:
    return CheckpointStore(directory, NAME)


def save(
    directory: Path, net, trainer, epoch: int, signature: dict[str, Any], history: list[dict], with_states: bool
) -> None:
    with store(directory).save(epoch, {"epoch": epoch, "signature": signature, "history": history}) as scratch:
        net.save_parameters(str(scratch / PARAMS))
        if with_states:
            trainer.save_states(str(scratch / STATES))


def find(directory: Path, signature: dict[str, Any], load=None) -> Checkpoint | None:
    """The newest intact checkpoint in `directory` written for the same model and data shape, else None.
    `load(checkpoint)`, when given, restores from it; a checkpoint it cannot load is skipped too."""

    def accept(found) -> Checkpoint:
        if found.meta.get("signature") != signature:
            raise SkipCheckpoint(f"it was written for {found.meta.get('signature')}, this job is {signature}")
        checkpoint = Checkpoint(
            int(found.meta["epoch"]),
            found.file(PARAMS),
            found.file(STATES) if found.has(STATES) else None,
            list(found.meta.get("history", [])),
        )
        if load is not None:
            load(checkpoint)
        return checkpoint

    restored = store(directory).restore(accept)
    return restored[1] if restored else None
