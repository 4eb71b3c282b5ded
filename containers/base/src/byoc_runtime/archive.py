"""model.tar.gz and sourcedir.tar.gz: create them as SageMaker does, extract them without trusting them."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path


class UnsafeArchiveError(ValueError):
    """The archive tries to write outside its target (path traversal, links out, devices)."""


def create_archive(source_dir: str | os.PathLike, archive: str | os.PathLike) -> Path:
    """Tar+gzip the contents of source_dir (entries relative to it), like SageMaker's model.tar.gz."""
    source, target = Path(source_dir), Path(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for entry in sorted(source.iterdir()):
            if entry.resolve() != target.resolve():
                tar.add(entry, arcname=entry.name)
    return target


def safe_extract(archive: str | os.PathLike, target_dir: str | os.PathLike) -> Path:
    """Extract, refusing members that would land outside target_dir or are not plain files/dirs/safe links."""
    target = Path(target_dir).resolve()
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member, target)
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: the standard library checks too
            tar.extractall(target, members=members, filter="data")
        else:  # pragma: no cover - older patch releases; our own checks above already ran
            tar.extractall(target, members=members)
    return target


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
