"""application/json, numpy-aware, strict: only what RFC 8259 allows, and only finite numbers.

Python's json module accepts NaN, Infinity and -Infinity, turns 1e999 into inf, and raises RecursionError
(not ValueError) on deeply nested input; a model fed those answers nonsense or fails with a 500. Here each
is a ValueError, which the codec registry turns into a 400. Encoding refuses non-finite numbers too (JSON
cannot carry them; NaN would reach clients as invalid JSON).

orjson (Rust, 3-10x faster both ways) does the work where it gives the same answer: a body it refuses, or
one with an integer of 19+ digits (orjson would read it as a float), goes through the stdlib path, whose
errors are the ones above; an answer it cannot write exactly as the stdlib would (NaN, which orjson writes as
null; integers past 64 bits; keys that are not strings; non-ASCII text, which the stdlib escapes) is written
by the stdlib. Without orjson (a user's own image) the stdlib does it all. Differences left: exponents are
written 1e-7 / 1e22 (the stdlib: 1e-07 / 1e+22, the same numbers); documents nested 1,000 to 1,024 levels
deep are read (the stdlib refused them as nested too deeply); Enum and UUID values are written (the stdlib
refused them).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

try:
    import orjson

    # Dataclasses and datetimes go to _default, which refuses them as the stdlib does
    _ORJSON_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
except ImportError:  # pragma: no cover - exercised by the fallback test with orjson hidden
    orjson = None

# Only a float literal with an exponent of three or more digits can overflow to inf; look for one (a C-speed
# search) before paying for a Python call per float (the stdlib path; orjson refuses such numbers itself).
_LARGE_EXPONENT = re.compile(rb"[eE][+]?\d{3,}")
# A run of 19+ digits may be an integer past 64 bits, which orjson reads as a float and the stdlib exactly:
# such bodies go the stdlib way. A run right after a "." is a fraction (0.0007999999797903001, as float32
# values print), which both read as the same float: those stay with orjson. Found by mapping every digit to
# 0, "." to itself and every other byte to x, then looking for x and 19 zeros (7 us for 16 KB; a regex took
# 60 us for 3 KB).
_NUMBER_SHAPE = b"".join(b"0" if c in b"0123456789" else b"." if c == ord(".") else b"x" for c in range(256))
_LONG_NUMBER = b"0" * 19
_LONG_INTEGER = b"x" + _LONG_NUMBER  # not after a "."; a body that starts with one is checked apart


def _may_hold_long_integer(raw: bytes) -> bool:
    shape = raw.translate(_NUMBER_SHAPE)
    return _LONG_INTEGER in shape or shape.startswith(_LONG_NUMBER)


class NonFiniteValue(ValueError):
    """A prediction holds NaN or an infinity, which JSON (and our other text formats) cannot carry."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows; send finite numbers")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large for a 64-bit float")
    return value


def loads(text: bytes | str) -> Any:
    """Parse one JSON value; ValueError for anything but strict JSON with finite numbers."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if orjson is not None and not _may_hold_long_integer(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the stdlib's reading says what is wrong (or accepts what orjson does not, e.g. lone surrogates)
    try:
        if _LARGE_EXPONENT.search(raw):
            return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def decode(body: bytes) -> Any:
    if not body.strip():
        raise ValueError("the body is empty")
    return loads(body)


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(data: Any) -> bytes:
    if orjson is not None:
        try:
            encoded = orjson.dumps(data, default=_default, option=_ORJSON_PASSTHROUGH)
        except (orjson.JSONEncodeError, TypeError):
            encoded = None  # the stdlib says why, or writes what orjson cannot (integers past 64 bits)
        # orjson writes NaN and infinities as null, and non-ASCII text unescaped: those answers are the stdlib's
        if encoded is not None and b"null" not in encoded and encoded.isascii():
            return encoded
    return _stdlib_encode(data)


def _stdlib_encode(data: Any) -> bytes:
    try:
        return json.dumps(data, default=_default, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as err:
        if "Out of range float values" in str(err):
            raise NonFiniteValue("the prediction holds NaN or infinite values") from None
        raise
