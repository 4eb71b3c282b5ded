"""Helpers for the unit tests of bad training inputs, in every family: a channel of given files, and the
one-line message a bad input fails with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from byoc_runtime.errors import DataError
from byoc_runtime.training_env import Channel


def channel_with(
    tmp_path: Path, files: dict[str, bytes], content_type: str | None = None, name: str = "train"
) -> Channel:
    """Channel `name` whose directory holds `files` (relative path -> bytes; sub-folders are made)."""
    directory = tmp_path / name
    directory.mkdir(parents=True, exist_ok=True)
    for relative, body in files.items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(body)
    return Channel(name, directory, content_type)


def one_line_error(call: Callable[[], object]) -> str:
    """The DataError `call` raises: one line (the failure file's first line), no traceback in it."""
    with pytest.raises(DataError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message
