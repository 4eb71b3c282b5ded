"""Test inputs Pillow cannot write: Adam7-interlaced and 16-bit colour PNGs, headers declaring any size, and a
genuine decompression bomb. Writers of our own test data only; requests are read by Pillow.

tests/test_gluon_cnn.py loads this file by path (it runs outside this directory's sys.path).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey+alpha, RGB, RGBA
# Adam7: (x0, y0, dx, dy) of the seven passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def encode(image, kind: str = "PNG", **options) -> bytes:
    """What a client sends: Pillow's own PNG or JPEG of an Image or a uint8 (or uint16 grey) array."""
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).save(buffer, kind, **options)
    return buffer.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(pixels, *, interlaced: bool = False) -> bytes:
    """uint8 or uint16 (h, w) or (h, w, channels) -> a PNG of bit depth 8 or 16, optionally Adam7-interlaced."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    depth = 16 if pixels.dtype == np.uint16 else 8
    samples = pixels.astype(">u2" if depth == 16 else np.uint8)
    height, width, channels = pixels.shape
    raw = b""
    for x0, y0, dx, dy in _ADAM7 if interlaced else ((0, 0, 1, 1),):
        reduced = samples[y0::dy, x0::dx]
        if reduced.size:  # an empty pass has no rows at all, not even filter bytes
            raw += b"".join(b"\x00" + row.tobytes() for row in reduced)
    header = struct.pack(">IIBBBBB", width, height, depth, _COLOUR_TYPE[channels], 0, 0, int(interlaced))
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def declaring(width: int, height: int) -> bytes:
    """A few dozen bytes: an 8-bit grey PNG header declaring width x height, then a little image data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A complete, valid 1-bit black PNG of width x height: about 300 KB at 50,000 x 50,000 that inflate to
    312 MB of rows (and would be 2.5 GB in a decoder's 8-bit raster). Built without ever holding the rows:
    after a full flush the deflate output of the same block of zero rows repeats byte for byte."""
    row = 1 + (width + 7) // 8  # filter byte + packed bits, all zero
    rows_per_block = 100
    blocks, rest = divmod(height, rows_per_block)
    compressor = zlib.compressobj(9)
    zero_block = bytes(row * rows_per_block)
    first = compressor.compress(zero_block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(zero_block) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert first[2:] == repeated, "deflate did not repeat itself"
    tail = compressor.compress(bytes(row * rest)) + compressor.flush()
    total = row * height
    adler = ((total % 65521) << 16) | 1  # adler-32 of `total` zero bytes
    stream = first + repeated * (blocks - 1) + tail[:-4] + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
