"""A small, bounded PNG reader (and a writer for tests and demos), numpy + zlib only.

Reads non-interlaced 8-bit grey, grey+alpha, RGB, RGBA and palette images, the kinds a client sends for
a digit. Every chunk's CRC is checked and the inflated size is capped before inflating, so a
decompression bomb or a truncated file is a ValueError (a 400), never a hang or a memory blow-up.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 2048 * 2048
# colour type -> channels per pixel (bit depth 8)
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def is_png(body: bytes) -> bool:
    return body[:8] == SIGNATURE


def _chunks(body: bytes):
    position = 8
    while position + 12 <= len(body):
        (length,) = struct.unpack(">I", body[position : position + 4])
        kind = body[position + 4 : position + 8]
        data = body[position + 8 : position + 8 + length]
        if len(data) != length or position + 12 + length > len(body):
            raise ValueError("the PNG is truncated")
        (crc,) = struct.unpack(">I", body[position + 8 + length : position + 12 + length])
        if zlib.crc32(kind + data) & 0xFFFFFFFF != crc:
            raise ValueError(f"the PNG chunk {kind!r} has a bad CRC")
        yield kind, data
        position += 12 + length
        if kind == b"IEND":
            return
    raise ValueError("the PNG has no IEND chunk (truncated?)")


def decode(body: bytes) -> np.ndarray:
    """PNG bytes -> uint8 array of shape (height, width, channels), channels 1 (grey), 2, 3 or 4."""
    if not is_png(body):
        raise ValueError("not a PNG (bad signature)")
    header, palette, compressed = None, None, []
    for kind, data in _chunks(body):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data)
        elif kind == b"PLTE":
            palette = np.frombuffer(data, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            compressed.append(data)
    if header is None:
        raise ValueError("the PNG has no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if colour not in _CHANNELS or depth != 8:
        raise ValueError(f"unsupported PNG: bit depth {depth}, colour type {colour} (8-bit grey/RGB/RGBA/palette)")
    if interlace:
        raise ValueError("interlaced PNGs are not supported")
    if not 0 < width * height <= MAX_PIXELS:
        raise ValueError(f"the PNG is {width}x{height}; at most {MAX_PIXELS} pixels are accepted")
    channels = _CHANNELS[colour]
    stride = width * channels
    expected = height * (stride + 1)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(compressed), expected + 1)
    except zlib.error as err:
        raise ValueError(f"the PNG image data is corrupt: {err}") from None
    if len(raw) != expected:
        raise ValueError(f"the PNG image data has {len(raw)} bytes, expected {expected}")
    pixels = _unfilter(np.frombuffer(raw, np.uint8).reshape(height, stride + 1), channels)
    image = pixels.reshape(height, width, channels)
    if colour == 3:
        if palette is None:
            raise ValueError("a palette PNG without a PLTE chunk")
        if int(image.max()) >= len(palette):
            raise ValueError("the PNG uses a palette index beyond its PLTE chunk")
        image = palette[image[:, :, 0]]
    return image


def _unfilter(rows: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the per-scanline filters (PNG spec section 9). Sub and Up are vectorised; Average and Paeth
    depend on the reconstructed left neighbour, so they loop over pixels (fine at the sizes we accept)."""
    height, width = rows.shape[0], rows.shape[1] - 1
    out = np.zeros((height, width), np.uint8)
    previous = np.zeros(width, np.int32)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:
            current = line
        elif kind == 1:
            current = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) % 256
        elif kind == 2:
            current = (line + previous) % 256
        elif kind in (3, 4):
            current = np.zeros(width, np.int32)
            for x in range(0, width, bpp):
                left = current[x - bpp : x] if x else np.zeros(bpp, np.int32)
                up = previous[x : x + bpp]
                if kind == 3:
                    predictor = (left + up) // 2
                else:
                    upper_left = previous[x - bpp : x] if x else np.zeros(bpp, np.int32)
                    predictor = _paeth(left, up, upper_left)
                current[x : x + bpp] = (line[x : x + bpp] + predictor) % 256
        else:
            raise ValueError(f"the PNG uses an unknown filter type {kind}")
        out[y] = current
        previous = current
    return out


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def encode(image: np.ndarray) -> bytes:
    """uint8 (height, width) grey or (height, width, 3) RGB -> PNG bytes (filter 0)."""
    image = np.asarray(image, np.uint8)
    colour = 0 if image.ndim == 2 else {1: 0, 3: 2, 4: 6}[image.shape[2]]
    height, width = image.shape[:2]
    rows = image.reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
