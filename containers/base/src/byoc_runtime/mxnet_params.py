"""Read MXNet's NDArray files (mx.nd.save: `.params` of gluon's export, the built-in algorithms' `params`)
without MXNet, for the serve-only images.

The format (MXNet 1.x, src/ndarray/ndarray.cc, NDArray::Save): uint64 magic 0x112, uint64 reserved, uint64
count, then per array: uint32 magic (V2 0xF993FAC9, V3 0xF993FACA: numpy shapes; V1 arrays start with their
ndim instead), int32 storage type (0: dense; sparse arrays are refused), int32 ndim + int64 dims (V1: uint32
ndim + uint32 dims), int32 device type + int32 device id, int32 dtype flag, the data (little endian, C order);
then uint64 count of names and each name as uint64 length + bytes. Every length is checked against the file
before it is used.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

LIST_MAGIC = 0x112
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
DTYPES = {0: "<f4", 1: "<f8", 2: "<f2", 3: "u1", 4: "<i4", 5: "i1", 6: "<i8", 7: "?"}


class ParamsError(ValueError):
    """Not an NDArray file this reader understands (the message says where and why)."""


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.at, self.source = data, 0, source

    def take(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise ParamsError(f"{self.source}: truncated at byte {self.at} (needs {size} more bytes)")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def load(path: str | Path) -> dict[str, np.ndarray]:
    """name -> array (names as saved, e.g. "arg:dense0_weight"); unnamed arrays are "0", "1", ..."""
    path = Path(path)
    return loads(path.read_bytes(), str(path))


def loads(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    reader = _Reader(data, source)
    magic, _reserved, count = reader.unpack("<QQQ")
    if magic != LIST_MAGIC:
        raise ParamsError(f"{source}: not an MXNet NDArray file (magic {magic:#x}, expected {LIST_MAGIC:#x})")
    if count > len(data):
        raise ParamsError(f"{source}: claims {count} arrays in {len(data)} bytes")
    arrays = [_array(reader, number) for number in range(count)]
    (named,) = reader.unpack("<Q")
    if named not in (0, count):
        raise ParamsError(f"{source}: {count} arrays but {named} names")
    names = [reader.take(reader.unpack("<Q")[0]).decode() for _ in range(named)] or [str(i) for i in range(count)]
    return dict(zip(names, arrays, strict=True))


def _array(reader: _Reader, number: int) -> np.ndarray:
    (magic,) = reader.unpack("<I")
    if magic in (V2_MAGIC, V3_MAGIC):
        (stype,) = reader.unpack("<i")
        if stype != 0:
            raise ParamsError(f"{reader.source}: array {number} is sparse (storage type {stype}); only dense")
        (ndim,) = reader.unpack("<i")
        shape = reader.unpack(f"<{ndim}q") if ndim > 0 else ()
        if ndim < 0 or (ndim == 0 and magic == V2_MAGIC):
            return np.zeros(0, np.float32)  # a "none" array: nothing follows
    else:  # V1: the magic was the shape's ndim
        ndim = magic
        if ndim > 32:
            raise ParamsError(f"{reader.source}: array {number} has an unknown header ({magic:#x})")
        shape = reader.unpack(f"<{ndim}I")
    reader.unpack("<ii")  # the device it was saved from
    (flag,) = reader.unpack("<i")
    if flag not in DTYPES:
        raise ParamsError(f"{reader.source}: array {number} has an unsupported dtype flag {flag}")
    dtype = np.dtype(DTYPES[flag])
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if any(d < 0 for d in shape) or size * dtype.itemsize > len(reader.data):
        raise ParamsError(f"{reader.source}: array {number} claims shape {list(shape)}, more than the file holds")
    return np.frombuffer(reader.take(size * dtype.itemsize), dtype).reshape(shape).astype(dtype.newbyteorder("="))
