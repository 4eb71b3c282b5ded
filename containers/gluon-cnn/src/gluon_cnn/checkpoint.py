"""Per-epoch checkpoints in the checkpoint directory (synced to S3 by SageMaker), and resuming from them.

byoc_runtime's CheckpointStore keeps the newest three as gluon-cnn-<epoch>/ directories: gluon-cnn.params,
gluon-cnn.states (trainer momentum, saved where it lives in this process, not on dist servers) and
MANIFEST.json, written last, with the epoch, network, history and the size and sha256 of each file. Resuming
takes the newest intact checkpoint; each one skipped (truncated, missing a file, unloadable) is logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from byoc_runtime.checkpoints import CheckpointStore
from byoc_runtime.errors import TrainingError

NAME = "gluon-cnn"
PARAMS, STATES = f"{NAME}.params", f"{NAME}.states"


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    network: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)


def store(directory: Path) -> CheckpointStore:
    return CheckpointStore(directory, NAME)


def save(directory: Path, net, trainer, progress: Progress, *, with_states: bool) -> None:
    meta = {"epoch": progress.epoch, "network": progress.network, "history": progress.history}
    with store(directory).save(progress.epoch, meta) as scratch:
        net.save_parameters(str(scratch / PARAMS))
        if with_states:
            trainer.save_states(str(scratch / STATES))


def load(directory: Path, net, trainer, network: str, ctx, *, with_states: bool = True) -> Progress | None:
    """Restore net (and trainer states when saved and wanted) from the newest intact checkpoint; None when
    there is none. Distributed jobs pass with_states=False: their optimizer runs on the servers."""

    def restore(found) -> Progress:
        saved_network = found.meta.get("network")
        if saved_network != network:
            raise TrainingError(
                f"The checkpoint in {directory} is of network '{saved_network}', not '{network}': "
                "use another checkpoint location or the same network"
            )
        net.load_parameters(str(found.file(PARAMS)), ctx=ctx)
        if with_states and found.has(STATES):
            try:
                trainer.load_states(str(found.file(STATES)))
            except Exception as err:  # noqa: BLE001 - momentum is worth keeping but not worth failing for
                print(f"checkpoint: optimizer states not restored ({type(err).__name__}: {err})", flush=True)
        return Progress(int(found.meta["epoch"]), network, list(found.meta.get("history", [])))

    restored = store(directory).restore(restore)
    return restored[1] if restored else None
