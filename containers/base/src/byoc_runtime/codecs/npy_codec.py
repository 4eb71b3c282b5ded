"""application/x-npy. Never with allow_pickle: an object array in a request would run code on load.

The header is read with numpy's own parser (numpy.lib.format: a literal, never evaluated as code) and checked
before a byte of array memory is allocated: only booleans, integers and floats, a shape whose size matches the
bytes that follow (numpy's loader allocates the declared shape first: 10^12 elements claimed in a 100-byte
body would be a 500 or an out-of-memory kill), and finite values.
"""

from __future__ import annotations

import functools
import io
import math
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

ALLOWED_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def read_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of an .npy header, read with numpy's parser; ValueError if it is not one."""
    try:
        version = npy_format.read_magic(stream)
    except ValueError:
        raise ValueError("not an .npy array (bad magic string)") from None
    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f".npy format version {version} is not supported (1.0 or 2.0)")
    try:
        return readers[version](stream)
    except (ValueError, SyntaxError, TypeError) as err:
        raise ValueError(f"the .npy header is invalid: {err}") from None


@functools.lru_cache(maxsize=256)
def _read_header_bytes(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    return read_header(io.BytesIO(header))


def _header_bytes(body: bytes | bytearray | memoryview) -> bytes | None:
    """The magic string, version, length and header dict of an .npy body, as bytes (None: not one whole).
    Clients send the same header request after request, and numpy's parser (a tokenizer over the dict's
    text) costs as much as the rest of decoding a small image: parsed once per distinct header, above."""
    widths = {b"\x01\x00": 2, b"\x02\x00": 4}
    width = widths.get(bytes(body[6:8]))
    if bytes(body[:6]) != npy_format.MAGIC_PREFIX or width is None or len(body) < 8 + width:
        return None
    end = 8 + width + int.from_bytes(body[8 : 8 + width], "little")
    # bytes, hashable, whatever buffer the body came in (sagemaker-inference hands handlers a bytearray)
    return bytes(body[:end]) if end <= len(body) and end - 8 - width <= 10_000 else None


def decode(body: bytes) -> np.ndarray:
    if body[:2] == b"PK":
        raise ValueError("expected a single .npy array, not an .npz archive")
    stream, header = io.BytesIO(body), _header_bytes(body)
    if header is not None:
        shape, fortran_order, dtype = _read_header_bytes(header)
        stream.seek(len(header))
    else:
        shape, fortran_order, dtype = read_header(stream)
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in ALLOWED_KINDS:
        raise ValueError(f"arrays of {dtype} are not accepted; send booleans, integers or floats")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(f"the .npy header declares an invalid shape {shape}")
    declared = math.prod(shape) * dtype.itemsize
    present = len(body) - stream.tell()
    if declared != present:
        raise ValueError(f"the .npy header declares shape {list(shape)} ({declared} bytes) but {present} bytes follow")
    count = math.prod(shape)
    array = np.frombuffer(body, dtype=dtype, count=count, offset=stream.tell())
    array = array.reshape(shape, order="F" if fortran_order else "C").copy()  # writable, like np.load's
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("the array holds NaN or infinite values; send finite numbers")
    return array


def encode(data: Any) -> bytes:
    from . import predictions_of
    from .json_codec import NonFiniteValue

    array = np.asarray(predictions_of(data))
    if array.dtype == object:
        raise ValueError("this prediction cannot be written as NPY (not a numeric array); ask for JSON")
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise NonFiniteValue("the prediction holds NaN or infinite values")
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
