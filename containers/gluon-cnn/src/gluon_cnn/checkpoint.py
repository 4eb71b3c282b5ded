"""Per-epoch checkpoints in the checkpoint directory (synced to S3 by SageMaker), and resuming from them.

Three files; the JSON is written last and atomically, so its presence means the parameters next to it
are complete. Trainer (momentum) states are saved where they live in this process (not on dist servers).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from byoc_runtime.errors import TrainingError

PARAMS, STATES, STATE = "gluon-cnn.params", "gluon-cnn.states", "gluon-cnn-checkpoint.json"


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    network: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)


def save(directory: Path, net, trainer, progress: Progress, *, with_states: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    net.save_parameters(_tmp(directory / PARAMS))
    os.replace(_tmp(directory / PARAMS), directory / PARAMS)
    if with_states:
        trainer.save_states(_tmp(directory / STATES))
        os.replace(_tmp(directory / STATES), directory / STATES)
    state = {"epoch": progress.epoch, "network": progress.network, "history": progress.history}
    Path(_tmp(directory / STATE)).write_text(json.dumps(state, indent=1))
    os.replace(_tmp(directory / STATE), directory / STATE)


def load(directory: Path, net, trainer, network: str, ctx, *, with_states: bool = True) -> Progress | None:
    """Restore net (and trainer states when saved and wanted) from the directory; None when there is no
    checkpoint. Distributed jobs pass with_states=False: their optimizer runs on the servers."""
    state_file = directory / STATE
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    if state.get("network") != network:
        raise TrainingError(
            f"The checkpoint in {directory} is of network '{state.get('network')}', not '{network}': "
            "use another checkpoint location or the same network"
        )
    net.load_parameters(str(directory / PARAMS), ctx=ctx)
    if with_states and (directory / STATES).exists():
        try:
            trainer.load_states(str(directory / STATES))
        except Exception as err:  # noqa: BLE001 - momentum is worth keeping but not worth failing for
            print(f"checkpoint: optimizer states not restored ({type(err).__name__}: {err})", flush=True)
    return Progress(int(state["epoch"]), network, list(state.get("history", [])))


def _tmp(path: Path) -> str:
    return str(path) + ".tmp"
