"""Nothing half-written: files appear under their final name complete, or not at all.

Every file is written to a temporary name in its own directory, flushed, fsynced and renamed into place
(`os.replace`, atomic on POSIX), and the directory is fsynced so the rename itself survives a power loss.
A reader never sees a truncated model, checkpoint, metrics or failure file; a crash leaves at most a
hidden `.<name>.tmp-*` file behind.

Files a framework writes itself (MXNet's export/save_parameters, TensorFlow's SavedModel and checkpoints)
go through `staged(target)`: the framework writes into a scratch directory outside the target, and we copy
each file into place with `copy_file`. A write that fails for lack of space then raises an OSError from our
code, carrying the errno and the name of the file being written, not a framework error without either.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# errno values that mean "the volume is full" (EDQUOT: a quota, e.g. on a network file system).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded")
COPY_CHUNK = 1 << 20


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename or unlink in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and Windows) refuse fsync on a directory: nothing more to do
        pass
    finally:
        os.close(fd)


def temporary_name(path: Path) -> Path:
    """A hidden name beside `path`, unique per writer (hosts sharing a checkpoint volume, threads)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _named(err: OSError, path: Path) -> OSError:
    """The same error, naming the file we meant to write (a failed write() carries no file name)."""
    if err.errno is None:
        return err
    named = type(err)(err.errno, err.strerror or os.strerror(err.errno), str(path))
    named.__cause__ = err
    return named


@contextlib.contextmanager
def open_for_write(path: str | os.PathLike, mode: str = "wb", *, durable: bool = True) -> Iterator[IO[Any]]:
    """Open `path` for writing under a temporary name; on success it is renamed into place, on any error the
    temporary file is removed and `path` is left as it was. OSErrors name `path` (e.g. ENOSPC)."""
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"open_for_write writes a new file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    tmp = temporary_name(path)
    try:
        handle = open(tmp, mode)  # noqa: SIM115 - closed below
    except OSError as err:
        raise _named(err, path) from None
    try:
        try:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        finally:
            handle.close()
        os.replace(tmp, path)
    except OSError as err:
        _remove_quietly(tmp)
        if err.filename not in (None, str(tmp)):  # about another file (e.g. the source of a copy)
            raise
        raise _named(err, path) from None
    except BaseException:
        _remove_quietly(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    with open_for_write(path, "wb", durable=durable) as out:
        out.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> Path:
    with open_for_write(path, "w", durable=durable) as out:
        out.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, value: Any, *, indent: int | None = 2, **dumps: Any) -> Path:
    return write_text(path, json.dumps(value, indent=indent, **dumps) + "\n")


def save_npz(path: str | os.PathLike, *, compressed: bool = False, **arrays: Any) -> Path:
    """numpy.savez(path, **arrays), atomically (the archive is built in memory, then written once)."""
    import numpy as np

    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return write_bytes(path, buffer.getbuffer())


def copy_file(source: str | os.PathLike, target: str | os.PathLike, *, durable: bool = True) -> Path:
    """Copy `source` to `target` atomically; ENOSPC while writing names `target`."""
    with open(source, "rb") as src, open_for_write(target, "wb", durable=durable) as out:
        shutil.copyfileobj(src, out, COPY_CHUNK)
    return Path(target)


def publish(scratch: str | os.PathLike, target: str | os.PathLike, *, durable: bool = True) -> list[Path]:
    """Copy every file under `scratch` to the same relative path under `target`, each one atomically
    (directories are created as needed). Files already in `target` and not in `scratch` are left alone.
    Returns the published paths."""
    scratch, target = Path(scratch), Path(target)
    published: list[Path] = []
    for root, dirs, files in os.walk(scratch):
        dirs.sort()
        relative = Path(root).relative_to(scratch)
        destination = target / relative
        try:
            destination.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _named(err, destination) from None
        for name in sorted(files):
            published.append(copy_file(Path(root) / name, destination / name, durable=durable))
    return published


@contextlib.contextmanager
def scratch(target: str | os.PathLike) -> Iterator[Path]:
    """A scratch directory in TMPDIR (outside `target`), removed when the block ends. A framework error in
    the block that says the disk is full (MXNetError, tf.errors.*) becomes OSError(ENOSPC) naming `target`."""
    path = Path(tempfile.mkdtemp(prefix="byoc-scratch-"))
    try:
        try:
            yield path
        except OSError:
            raise
        except Exception as err:
            if is_disk_full(err):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target)) from err
            raise
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def staged(target: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """`with staged(model_dir) as d: net.export(d / "model")`: the framework writes a set of files into a
    scratch directory; when the block ends without an error, each file is published into `target`
    atomically (see `publish`). An error leaves `target` as it was."""
    with scratch(target) as path:
        yield path
        publish(path, target, durable=durable)


def is_disk_full(err: BaseException) -> bool:
    """An OSError with ENOSPC/EDQUOT, or a framework error whose message says the volume is full."""
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        return True
    text = str(err)
    return any(message in text for message in DISK_FULL_MESSAGES)


def disk_full_error(err: BaseException) -> BaseException | None:
    """The error in `err`'s chain (causes and contexts) that says the disk is full, preferring an OSError
    that names its file; None when the failure is something else."""
    seen: set[int] = set()
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    for candidate in chain:
        if isinstance(candidate, OSError) and candidate.errno in DISK_FULL_ERRNOS and candidate.filename:
            return candidate
    return next((candidate for candidate in chain if is_disk_full(candidate)), None)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
