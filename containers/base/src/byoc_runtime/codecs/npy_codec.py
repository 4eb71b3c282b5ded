"""application/x-npy. Never with allow_pickle: an object array in a request would run code on load."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def decode(body: bytes) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except EOFError:
        raise ValueError("the body is not a complete .npy array") from None
    if not isinstance(array, np.ndarray):  # .npz archives load as NpzFile
        raise ValueError("expected a single .npy array, not an .npz archive")
    return array


def encode(data: Any) -> bytes:
    from . import predictions_of

    array = np.asarray(predictions_of(data))
    if array.dtype == object:
        raise ValueError("this prediction cannot be written as NPY (not a numeric array); ask for JSON")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
