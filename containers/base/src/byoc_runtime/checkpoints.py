"""Numbered, verified checkpoints: a job resumes from the newest one that is intact.

Layout, in the job's checkpoint directory (SageMaker syncs it with S3):

    <name>-000003/             one directory per checkpoint; the number is the step (e.g. epochs done)
        <the framework's files>
        MANIFEST.json          written last: step, the family's metadata, size and sha256 of every file
    <name>-000004/ ...

`save(step)` gives the framework a scratch directory to write into; the files are then copied into a hidden
`.<name>-000004.partial/` (each fsynced), the manifest is written, and the directory is renamed into place.
The newest `keep` checkpoints stay (BYOC_CHECKPOINTS_KEPT, default 3); any numbered above the one just
written are stale (a resumed job has gone past them) and are removed.

`restore(load)` walks the checkpoints newest to oldest, checks each against its manifest (present, valid,
every file of the recorded size and sha256), and loads the first intact one; each one it skips is logged as
a WARNING with the reason (a truncated file after a power loss, a missing file, a corrupt manifest, or
whatever the family's loader refused), and the outcome is recorded for metrics.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import atomic, metrics
from .errors import TrainingError

log = logging.getLogger("byoc_runtime.checkpoints")
MANIFEST = "MANIFEST.json"
FORMAT = 1
DEFAULT_KEEP = 3
KEEP_VARIABLE = "BYOC_CHECKPOINTS_KEPT"
HASH_CHUNK = 1 << 20
T = TypeVar("T")


class SkipCheckpoint(Exception):
    """Raised by a family's loader to skip a checkpoint (e.g. one of another model); the message says why."""


class CorruptCheckpoint(SkipCheckpoint):
    """A checkpoint that does not match its manifest."""


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path  # the checkpoint's directory
    meta: dict[str, Any] = field(default_factory=dict)  # what the family saved with it (epoch, history...)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # relative name -> {"size", "sha256"}

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return name in self.files


def kept_from_env(default: int = DEFAULT_KEEP) -> int:
    """How many checkpoints a store keeps: BYOC_CHECKPOINTS_KEPT (at least 1), else `default`."""
    raw = os.environ.get(KEEP_VARIABLE, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise TrainingError(f"{KEEP_VARIABLE} must be a whole number of checkpoints to keep, got {raw!r}") from None
    if value < 1:
        raise TrainingError(f"{KEEP_VARIABLE} must be at least 1, got {value}")
    return value


class CheckpointStore:
    """The checkpoints named `name` in `directory` (several stores can share a directory)."""

    def __init__(self, directory: str | os.PathLike, name: str, *, keep: int | None = None, durable: bool = True):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
            raise ValueError(f"checkpoint name {name!r}: letters, digits, '_', '-' and '.' only")
        self.directory = Path(directory)
        self.name = name
        self.keep = keep if keep is not None else kept_from_env()
        self.durable = durable
        self._pattern = re.compile(rf"{re.escape(name)}-(\d+)")

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.directory)!r}, {self.name!r}, keep={self.keep})"

    def path_of(self, step: int) -> Path:
        return self.directory / f"{self.name}-{step:06d}"

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def save(self, step: int, meta: dict[str, Any] | None = None) -> Iterator[Path]:
        """`with store.save(epoch, {"history": ...}) as scratch:` write the checkpoint's files into `scratch`;
        when the block ends without an error they become checkpoint `step` (replacing one of the same step).
        An error inside the block leaves the existing checkpoints as they were."""
        if step < 0:
            raise ValueError(f"checkpoint step must be >= 0, got {step}")
        with atomic.scratch(self.path_of(step)) as scratch:
            yield scratch
            self._commit(step, scratch, meta or {})

    def _commit(self, step: int, scratch: Path, meta: dict[str, Any]) -> Checkpoint:
        final = self.path_of(step)
        partial = self.directory / f".{final.name}.partial"
        if (scratch / MANIFEST).exists():
            raise ValueError(f"a checkpoint file may not be called {MANIFEST}")
        self._mkdir(self.directory)
        shutil.rmtree(partial, ignore_errors=True)
        try:
            published = atomic.publish(scratch, partial, durable=self.durable)
            files = {
                path.relative_to(partial).as_posix(): {"size": path.stat().st_size, "sha256": _sha256(path)}
                for path in published
            }
            manifest = {"format": FORMAT, "name": self.name, "step": step, "meta": meta, "files": files}
            text = json.dumps(manifest, indent=1, default=_json_default) + "\n"
            atomic.write_text(partial / MANIFEST, text, durable=self.durable)
        except OSError as err:  # free what was written, and name the checkpoint's file, not the hidden copy
            shutil.rmtree(partial, ignore_errors=True)
            raise _renamed(err, partial, final) from None
        replaced = None
        if final.exists():
            replaced = self.directory / f".{final.name}.old"
            shutil.rmtree(replaced, ignore_errors=True)
            os.replace(final, replaced)
        os.replace(partial, final)
        if self.durable:
            atomic.fsync_dir(self.directory)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        self._rotate(step)
        log.info("checkpoint %s written (%d files)", final, len(files))
        return Checkpoint(step, final, meta, files)

    def _mkdir(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(directory)) from err

    def _rotate(self, newest: int) -> None:
        """Keep the `keep` newest up to `newest`; drop any numbered above it (stale: this job went past them)."""
        steps = sorted((step for step, _ in self._numbered()), reverse=True)
        older = [step for step in steps if step <= newest]
        doomed = [step for step in steps if step > newest] + older[self.keep :]
        for step in doomed:
            shutil.rmtree(self.path_of(step), ignore_errors=True)
        for leftover in self.directory.glob(f".{self.name}-*"):  # what a crashed save left behind
            if leftover.is_dir() and leftover.name.endswith((".partial", ".old")):
                shutil.rmtree(leftover, ignore_errors=True)

    # ------------------------------------------------------------------ reading
    def _numbered(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = self._pattern.fullmatch(path.name)
            if match and path.is_dir():
                found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def steps(self) -> list[int]:
        """The steps present (intact or not), newest first."""
        return [step for step, _ in self._numbered()]

    def verify(self, step: int) -> Checkpoint:
        """The checkpoint `step` if every file matches its manifest; CorruptCheckpoint says why not."""
        path = self.path_of(step)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise CorruptCheckpoint(f"it has no {MANIFEST} (the save did not finish)")
        try:
            manifest = json.loads(manifest_path.read_text())
            files, meta = manifest["files"], manifest.get("meta", {})
            if int(manifest["step"]) != step or not isinstance(files, dict) or not isinstance(meta, dict):
                raise ValueError("unexpected content")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            raise CorruptCheckpoint(f"its {MANIFEST} is corrupt ({type(err).__name__}: {err})") from None
        for name, expected in sorted(files.items()):
            file = path / name
            if not file.is_file():
                raise CorruptCheckpoint(f"{name} is missing")
            size = file.stat().st_size
            if size != expected.get("size"):
                wanted = expected.get("size")
                raise CorruptCheckpoint(f"{name} is {size} bytes, the manifest says {wanted} (truncated?)")
            if _sha256(file) != expected.get("sha256"):
                raise CorruptCheckpoint(f"{name} does not match its sha256 in the manifest")
        return Checkpoint(step, path, meta, files)

    def restore(self, load: Callable[[Checkpoint], T] | None = None) -> tuple[Checkpoint, T | None] | None:
        """Load the newest intact checkpoint: (checkpoint, what `load` returned), or None to start fresh.

        `load(checkpoint)` restores the family's state from checkpoint.file(...); if it raises, the checkpoint
        is skipped like a corrupt one (a TrainingError, the user's to fix, is raised instead). Every skipped
        checkpoint is logged as a WARNING with its reason."""
        skipped: list[dict[str, Any]] = []
        chosen: tuple[Checkpoint, Any] | None = None
        for step, path in self._numbered():
            try:
                checkpoint = self.verify(step)
                result = load(checkpoint) if load is not None else None
            except TrainingError:
                raise
            except SkipCheckpoint as err:
                reason = str(err)
            except Exception as err:  # noqa: BLE001 - the loader refused it: an older one may do
                reason = f"it could not be loaded ({type(err).__name__}: {err})"
            else:
                chosen = (checkpoint, result)
                break
            log.warning("skipping checkpoint %s: %s", path, reason)
            skipped.append({"checkpoint": path.name, "reason": reason})
        record: dict[str, Any] = {"resumed_from": chosen[0].step if chosen else None}
        if skipped:
            record["skipped"] = skipped
        if chosen is not None:
            log.info("resuming from checkpoint %s (step %d)", chosen[0].path, chosen[0].step)
        elif skipped:
            log.warning("no intact checkpoint in %s (%d skipped): starting from scratch", self.directory, len(skipped))
        if chosen is not None or skipped:
            metrics.record_checkpoint(self.name, record)
        return chosen

    def latest(self) -> Checkpoint | None:
        """The newest intact checkpoint (skipped ones are logged), without loading anything."""
        found = self.restore()
        return found[0] if found else None


def _renamed(err: OSError, partial: Path, final: Path) -> OSError:
    if err.errno is None or not err.filename:
        return err
    try:
        name = final / Path(err.filename).relative_to(partial)
    except ValueError:
        return err
    renamed = type(err)(err.errno, err.strerror, str(name))
    renamed.__cause__ = err
    return renamed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
