"""Is a served answer the reference answer? Bodies are compared by their content type: labels, ids and
strings exactly, floating-point numbers within a tolerance (the same model on the same input may differ in
the last bits where BLAS splits work over threads)."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import numpy as np

from byoc_runtime.codecs import media_type, recordio_protobuf

TOLERANCE = 1e-5


def same_answer(expected: bytes, expected_type: str, served: bytes, served_type: str | None) -> str | None:
    """None when the answers agree, else what differs."""
    kind = media_type(expected_type)
    if media_type(served_type) != kind:
        return f"content type {served_type!r}, expected {expected_type!r}"
    if served == expected:
        return None
    try:
        if kind == "application/json":
            return _diff(json.loads(expected), json.loads(served), "$")
        if kind in ("application/jsonlines", "application/jsonl", "application/x-jsonlines"):
            return _diff(_lines(expected), _lines(served), "$")
        if kind == "text/csv":
            return _diff(_csv(expected), _csv(served), "$")
        if kind == "application/x-npy":
            return _arrays(np.load(io.BytesIO(expected)), np.load(io.BytesIO(served)))
        if kind == "application/x-recordio-protobuf":
            return _diff(_records(expected), _records(served), "$")
    except ValueError as err:
        return f"the served body does not parse as {kind}: {err}"
    return "the bodies differ"


def _lines(body: bytes) -> list[Any]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _csv(body: bytes) -> list[list[Any]]:
    rows = []
    for row in csv.reader(io.StringIO(body.decode())):
        cells = []
        for cell in row:
            try:
                cells.append(float(cell))
            except ValueError:
                cells.append(cell)
        rows.append(cells)
    return rows


def _records(body: bytes) -> list[dict[str, list[float]]]:
    return [
        {key: list(value.float32_tensor.values) for key, value in record.label.items()}
        for record in recordio_protobuf.read_records(body)
    ]


def _arrays(expected: np.ndarray, served: np.ndarray) -> str | None:
    if expected.shape != served.shape or expected.dtype != served.dtype:
        return f"array {served.dtype}{list(served.shape)}, expected {expected.dtype}{list(expected.shape)}"
    if expected.dtype.kind == "f":
        if np.allclose(expected, served, rtol=TOLERANCE, atol=TOLERANCE):
            return None
        return f"arrays differ by up to {float(np.max(np.abs(expected - served))):.3g}"
    return None if np.array_equal(expected, served) else "integer arrays differ"


def _diff(expected: Any, served: Any, where: str) -> str | None:
    if isinstance(expected, bool) or isinstance(served, bool) or expected is None or isinstance(expected, str):
        return None if expected == served else f"{where}: {served!r}, expected {expected!r}"
    if isinstance(expected, int) and isinstance(served, int):
        return None if expected == served else f"{where}: {served}, expected {expected} (a label or id)"
    if isinstance(expected, int | float) and isinstance(served, int | float):
        if math.isclose(expected, served, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            return None
        return f"{where}: {served!r}, expected {expected!r}"
    if isinstance(expected, list) and isinstance(served, list):
        if len(expected) != len(served):
            return f"{where}: {len(served)} entries, expected {len(expected)}"
        for index, (a, b) in enumerate(zip(expected, served, strict=True)):
            found = _diff(a, b, f"{where}[{index}]")
            if found:
                return found
        return None
    if isinstance(expected, dict) and isinstance(served, dict):
        if set(expected) != set(served):
            return f"{where}: keys {sorted(served)}, expected {sorted(expected)}"
        for key in expected:
            found = _diff(expected[key], served[key], f"{where}.{key}")
            if found:
                return found
        return None
    return f"{where}: {type(served).__name__} {served!r:.80}, expected {type(expected).__name__}"
