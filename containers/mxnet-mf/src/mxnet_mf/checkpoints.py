"""Per-epoch checkpoints in /opt/ml/checkpoints (SageMaker syncs it with S3), and resuming from them.

Files: mxnet_mf-<epoch>.params (weights), mxnet_mf-<epoch>.states (optimizer state, single host only:
a dist kvstore keeps it on the servers, where MXNet cannot save it), and mxnet_mf.json last, which names
them. Writing the JSON last (atomically) means a crash mid-save leaves the previous checkpoint in force.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
MANIFEST = "mxnet_mf.json"


@dataclass(frozen=True)
class Checkpoint:
    epoch: int  # epochs completed
    params: Path
    states: Path | None
    history: list[dict[str, Any]]


def save(
    directory: Path, net, trainer, epoch: int, signature: dict[str, Any], history: list[dict], with_states: bool
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    params = directory / f"mxnet_mf-{epoch:04d}.params"
    net.save_parameters(str(params))
    states = None
    if with_states:
        states = directory / f"mxnet_mf-{epoch:04d}.states"
        trainer.save_states(str(states))
    manifest = {
        "epoch": epoch,
        "params": params.name,
        "states": states.name if states else None,
        "signature": signature,
        "history": history,
    }
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, directory / MANIFEST)
    keep = {params.name, states.name if states else None}
    for old in directory.glob("mxnet_mf-*.*"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def find(directory: Path, signature: dict[str, Any]) -> Checkpoint | None:
    """The checkpoint in `directory` if it was written for the same model and data shape, else None."""
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        log.warning("ignoring %s: not valid JSON", path)
        return None
    if manifest.get("signature") != signature:
        log.warning(
            "ignoring the checkpoint in %s: it was written for %s, this job is %s",
            directory,
            manifest.get("signature"),
            signature,
        )
        return None
    params = directory / manifest["params"]
    if not params.exists():
        log.warning("ignoring %s: %s is missing", path, params.name)
        return None
    states = directory / manifest["states"] if manifest.get("states") else None
    return Checkpoint(
        int(manifest["epoch"]), params, states if states and states.exists() else None, manifest.get("history", [])
    )
