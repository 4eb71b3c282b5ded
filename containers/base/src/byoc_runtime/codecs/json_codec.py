"""application/json, numpy-aware."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def decode(body: bytes) -> Any:
    if not body.strip():
        raise ValueError("the body is empty")
    return json.loads(body)


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(data: Any) -> bytes:
    return json.dumps(data, default=_default, separators=(",", ":")).encode()
