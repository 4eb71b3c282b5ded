"""text/csv: numeric rows, no header (the SageMaker convention for inference). Cells must be finite numbers:
numpy reads "nan", "inf" and "1e999" as floats, which a model would turn into nonsense."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np


def parse_rows(body: bytes) -> list[list[str]]:
    """Rows of stripped cells, blank lines skipped; for families whose CSV holds ids, not numbers."""
    text = body.decode("utf-8")
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]
    if not rows:
        raise ValueError("the body has no CSV rows")
    return rows


def decode(body: bytes) -> np.ndarray:
    rows = parse_rows(body)
    width = len(rows[0])
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise ValueError(f"row {number} has {len(row)} columns, row 1 has {width}")
    try:
        table = np.array(rows, dtype=np.float64)
    except ValueError:
        raise ValueError("CSV cells must be numbers") from None
    if not np.isfinite(table).all():
        row, column = np.argwhere(~np.isfinite(table))[0]
        raise ValueError(f"row {row + 1}, column {column + 1}: {rows[row][column]!r} is not a finite number")
    return table


def _cells(row: Any) -> list[Any]:
    if isinstance(row, dict):
        return [_cell(v) for v in row.values()]
    if isinstance(row, list | tuple | np.ndarray):
        return [_cell(v) for v in np.asarray(row, dtype=object).ravel()]
    return [_cell(row)]


def _cell(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        from .json_codec import NonFiniteValue

        raise NonFiniteValue("the prediction holds NaN or infinite values")
    if isinstance(value, list | tuple):
        return " ".join(map(str, value))
    return value


def encode(data: Any) -> bytes:
    from . import predictions_of

    rows = predictions_of(data)
    if isinstance(rows, np.ndarray) and rows.ndim == 1:
        rows = rows.reshape(-1, 1)
    if not isinstance(rows, list | tuple | np.ndarray):
        rows = [rows]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(_cells(row))
    return out.getvalue().encode()
