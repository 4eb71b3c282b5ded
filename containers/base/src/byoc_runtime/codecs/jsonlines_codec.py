"""application/jsonlines: one JSON value per line (batch transform with SplitType=Line), as strict as JSON."""

from __future__ import annotations

from typing import Any

from . import json_codec


def decode(body: bytes) -> list[Any]:
    rows = []
    for number, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json_codec.loads(line))
            except ValueError as err:
                raise ValueError(f"line {number}: {err}") from None
    if not rows:
        raise ValueError("the body has no JSON lines")
    return rows


def encode(data: Any) -> bytes:
    from . import predictions_of

    rows = predictions_of(data)
    if not isinstance(rows, list | tuple) and not hasattr(rows, "tolist"):
        rows = [rows]
    return b"".join(json_codec.encode(row) + b"\n" for row in rows)
