"""model.tar.gz and sourcedir.tar.gz: create them as SageMaker does, extract them without trusting them.

Before a byte is written, every member is checked: no path out of the target, no links out of it, no devices
or FIFOs, at most BYOC_MAX_ARCHIVE_MEMBERS members (default 100,000), and their sizes together within
BYOC_MAX_EXTRACT_BYTES (default: the free space of the target's file system), so an archive that would
expand past the disk fails at once with a message, not half-way with ENOSPC.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

DEFAULT_MAX_MEMBERS = 100_000


class UnsafeArchiveError(ValueError):
    """The archive tries to write outside its target (path traversal, links out, devices) or to expand past
    the limits."""


def create_archive(source_dir: str | os.PathLike, archive: str | os.PathLike) -> Path:
    """Tar+gzip the contents of source_dir (entries relative to it), like SageMaker's model.tar.gz."""
    source, target = Path(source_dir), Path(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for entry in sorted(source.iterdir()):
            if entry.resolve() != target.resolve():
                tar.add(entry, arcname=entry.name)
    return target


def safe_extract(
    archive: str | os.PathLike,
    target_dir: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    max_members: int | None = None,
) -> Path:
    """Extract, refusing members that would land outside target_dir or are not plain files/dirs/safe links,
    and archives that expand past `max_bytes` or hold more than `max_members` members (see the module)."""
    target = Path(target_dir).resolve()
    target.mkdir(parents=True, exist_ok=True)
    max_bytes = _limit("BYOC_MAX_EXTRACT_BYTES", max_bytes, lambda: shutil.disk_usage(target).free)
    max_members = _limit("BYOC_MAX_ARCHIVE_MEMBERS", max_members, lambda: DEFAULT_MAX_MEMBERS)
    with tarfile.open(archive, "r:*") as tar:
        members, total = [], 0
        for member in tar:  # one header at a time: a million-member archive stops at the limit, not in memory
            if len(members) == max_members:
                raise UnsafeArchiveError(f"the archive has more than {max_members} members (BYOC_MAX_ARCHIVE_MEMBERS)")
            _check_member(member, target)
            total += member.size if member.isfile() else 0
            if total > max_bytes:
                raise UnsafeArchiveError(
                    f"the archive expands to more than {max_bytes} bytes (at member {member.name!r}): over "
                    "BYOC_MAX_EXTRACT_BYTES or the free disk space"
                )
            members.append(member)
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the standard library checks too
            tar.extractall(target, members=members, filter="data")
        else:  # pragma: no cover - older patch releases; our own checks above already ran
            tar.extractall(target, members=members)
    return target


def _limit(variable: str, given: int | None, default) -> int:
    if given is not None:
        return given
    value = os.environ.get(variable)
    return int(value) if value else int(default())


def _check_member(member: tarfile.TarInfo, target: Path) -> None:
    destination = (target / member.name).resolve()
    if not _inside(destination, target):
        raise UnsafeArchiveError(f"archive member {member.name!r} would be written outside the target directory")
    if member.isdev() or member.isfifo():
        raise UnsafeArchiveError(f"archive member {member.name!r} is a device or FIFO")
    if member.issym() or member.islnk():
        link = member.linkname
        base = destination.parent if member.issym() else target
        if os.path.isabs(link) or not _inside((base / link).resolve(), target):
            raise UnsafeArchiveError(f"archive member {member.name!r} links outside the target directory ({link!r})")


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
