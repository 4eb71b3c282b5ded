"""The /opt/ml tree of one training host, laid out exactly as SageMaker lays it out."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ChannelSpec:
    """A channel: local files or a directory, with the ContentType and TrainingInputMode SageMaker would pass."""

    source: Path
    content_type: str | None = None
    input_mode: str = "File"  # File | Pipe | FastFile
    pipe_epochs: int = 1  # Pipe mode: how many times the data is streamed (FIFOs <channel>_0 .. _N-1)
    repeat: int = 1  # Pipe mode: each epoch streams the files this many times over (big channels, small disk)

    @classmethod
    def of(cls, spec: ChannelSpec | str | os.PathLike) -> ChannelSpec:
        return spec if isinstance(spec, ChannelSpec) else cls(Path(spec))

    def files(self) -> list[Path]:
        source = Path(self.source)
        if source.is_file():
            return [source]
        return sorted(p for p in source.rglob("*") if p.is_file())


@dataclass
class OptMlTree:
    root: Path
    current_host: str
    channels: dict[str, ChannelSpec]
    checkpoint_dir: Path | None

    @classmethod
    def create(
        cls,
        root: Path,
        hyperparameters: Mapping[str, Any],
        channels: Mapping[str, ChannelSpec],
        hosts: Sequence[str],
        current_host: str,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> OptMlTree:
        config = root / "input" / "config"
        for directory in (config, root / "model", root / "output" / "data", root / "code"):
            directory.mkdir(parents=True, exist_ok=True)
        # SageMaker passes every hyperparameter as a string; the SDK JSON-encodes the value first.
        encoded = {k: json.dumps(v) for k, v in hyperparameters.items()}
        _write_json(config / "hyperparameters.json", encoded)
        _write_json(
            config / "inputdataconfig.json",
            {
                name: {
                    **({"ContentType": spec.content_type} if spec.content_type else {}),
                    "TrainingInputMode": spec.input_mode,
                    "S3DistributionType": "FullyReplicated",
                    "RecordWrapperType": "None",
                }
                for name, spec in channels.items()
            },
        )
        _write_json(
            config / "resourceconfig.json",
            {
                "current_host": current_host,
                "current_instance_type": "local",
                "current_group_name": "homogeneousCluster",
                "hosts": list(hosts),
                "instance_groups": [
                    {"instance_group_name": "homogeneousCluster", "instance_type": "local", "hosts": list(hosts)}
                ],
                "network_interface_name": "eth0",
            },
        )
        checkpoints = Path(checkpoint_dir) if checkpoint_dir else None
        if checkpoints is not None:
            checkpoints.mkdir(parents=True, exist_ok=True)
            _write_json(config / "checkpointconfig.json", {"LocalPath": "/opt/ml/checkpoints", "S3Uri": ""})
        data = root / "input" / "data"
        for name, spec in channels.items():
            if spec.input_mode == "Pipe":
                data.mkdir(parents=True, exist_ok=True)
                continue
            target = data / name
            target.mkdir(parents=True, exist_ok=True)
            for file in spec.files():
                relative = file.name if Path(spec.source).is_file() else file.relative_to(spec.source)
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target / relative)
        return cls(root, current_host, dict(channels), checkpoints)

    def start_pipe_feeders(self, stop: threading.Event) -> list[threading.Thread]:
        feeders = []
        for name, spec in self.channels.items():
            if spec.input_mode == "Pipe":
                thread = threading.Thread(target=self._feed, args=(name, spec, stop), daemon=True)
                thread.start()
                feeders.append(thread)
        return feeders

    def _feed(self, name: str, spec: ChannelSpec, stop: threading.Event) -> None:
        """Stream the channel through <channel>_<epoch> FIFOs, one epoch after the other, as SageMaker does."""
        for epoch in range(spec.pipe_epochs):
            fifo = self.root / "input" / "data" / f"{name}_{epoch}"
            os.mkfifo(fifo)
            fd = _open_when_read(fifo, stop)
            if fd is None:
                return
            with os.fdopen(fd, "wb") as pipe:
                try:
                    for file in spec.files() * spec.repeat:
                        with open(file, "rb") as source:
                            shutil.copyfileobj(source, pipe, 1 << 20)
                except BrokenPipeError:
                    pass

    def archive_model(self, target: Path) -> Path:
        """model.tar.gz as SageMaker uploads it: the contents of /opt/ml/model, relative paths."""
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(target, "w:gz") as tar:
            for entry in sorted((self.root / "model").iterdir()):
                tar.add(entry, arcname=entry.name)
        return target


def _open_when_read(fifo: Path, stop: threading.Event) -> int | None:
    """Open a FIFO for writing once a reader has it open; give up when `stop` is set."""
    while not stop.is_set():
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
            time.sleep(0.05)
            continue
        os.set_blocking(fd, True)
        return fd
    return None


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1))
    path.chmod(path.stat().st_mode | stat.S_IROTH)
