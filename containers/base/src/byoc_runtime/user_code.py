"""User code for script mode (training) and for inference.py overrides (serving).

The submit directory is what the SDK gives as `sagemaker_submit_directory` / SAGEMAKER_SUBMIT_DIRECTORY:
an s3:// or local sourcedir.tar.gz, or a directory (local mode with local code mounts /opt/ml/code).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from .archive import safe_extract
from .errors import TrainingError

log = logging.getLogger(__name__)


def materialize(submit_directory: str | None, default_dir: Path) -> Path:
    """Return a local directory holding the user's code, downloading/extracting it if needed."""
    if not submit_directory:
        return default_dir
    location = submit_directory.removeprefix("file://")
    if location.startswith("s3://"):
        archive = Path(tempfile.mkdtemp(prefix="sourcedir-")) / "sourcedir.tar.gz"
        _download_s3(location, archive)
        return safe_extract(archive, default_dir)
    path = Path(location)
    if path.is_dir():
        return path
    if path.is_file():
        return safe_extract(path, default_dir)
    raise TrainingError(f"The submit directory {submit_directory!r} does not exist")


def _download_s3(uri: str, target: Path) -> None:
    try:
        import boto3  # only script mode with S3 code needs it
    except ImportError:
        raise TrainingError("boto3 is needed to download the source code from S3 but is not installed") from None
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    boto3.client("s3").download_file(bucket, key, str(target))


def install_requirements(code_dir: Path) -> None:
    requirements = code_dir / "requirements.txt"
    if not requirements.exists():
        return
    log.info("installing %s", requirements)
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(requirements)])
    if result.returncode != 0:
        raise TrainingError(f"Installing the script's requirements.txt failed (pip exit code {result.returncode})")


def script_command(program: str, code_dir: Path, args: list[str]) -> list[str]:
    """How the toolkit runs an entry point: .py with Python, .sh with sh, a module name with -m."""
    path = code_dir / program
    if program.endswith(".py"):
        if not path.exists():
            raise TrainingError(f"The entry point {program!r} was not found in the source directory {code_dir}")
        return [sys.executable, str(path), *args]
    if program.endswith(".sh"):
        return ["/bin/sh", str(path), *args]
    if path.is_file() and os.access(path, os.X_OK):
        return [str(path), *args]
    return [sys.executable, "-m", program, *args]


def load_module(path: Path, name: str = "user_inference") -> ModuleType:
    """Import a user's inference.py (its directory goes on sys.path so its own imports work)."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
