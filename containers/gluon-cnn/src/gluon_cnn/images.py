"""Raw images (PNG, JPEG) -> one 28x28 grey image in MNIST's convention: light strokes on a dark background.

PNG goes through our own bounded reader; JPEG through the libjpeg inside the MXNet wheel, after its
dimensions are read from the header and checked (no decompression bombs).
"""

from __future__ import annotations

import struct

import numpy as np

from . import png

SIDE = 28
MAX_JPEG_PIXELS = png.MAX_PIXELS


def is_jpeg(body: bytes) -> bool:
    return body[:3] == b"\xff\xd8\xff"


def decode(body: bytes) -> np.ndarray:
    """Image bytes (PNG or JPEG) -> float32 (28, 28) in [0, 1], light strokes on dark."""
    if png.is_png(body):
        pixels = png.decode(body)
    elif is_jpeg(body):
        pixels = _decode_jpeg(body)
    else:
        raise ValueError("the body is neither a PNG nor a JPEG image")
    return to_mnist(pixels)


def to_mnist(pixels: np.ndarray) -> np.ndarray:
    grey = to_grey(pixels)
    small = resize(grey, SIDE, SIDE) / 255.0
    # MNIST digits are white on black; a photo or drawing of a dark digit on paper has a light border.
    if _border_mean(small) > 0.5:
        small = 1.0 - small
    return small.astype(np.float32)


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """(h, w, c) uint8 -> (h, w) float64 in 0..255; transparent pixels count as white paper."""
    pixels = pixels.astype(np.float64)
    if pixels.ndim == 2:
        return pixels
    channels = pixels.shape[2]
    colour = pixels[:, :, : (1 if channels in (1, 2) else 3)]
    grey = colour[:, :, 0] if colour.shape[2] == 1 else colour @ np.array([0.299, 0.587, 0.114])
    if channels in (2, 4):
        alpha = pixels[:, :, -1] / 255.0
        grey = grey * alpha + 255.0 * (1.0 - alpha)
    return grey


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area average when shrinking (each output pixel averages the source box it covers, via an integral
    image); nearest neighbour when enlarging (the box is then one source pixel)."""
    r0, r1 = _boxes(image.shape[0], height)
    c0, c1 = _boxes(image.shape[1], width)
    integral = np.zeros((image.shape[0] + 1, image.shape[1] + 1))
    integral[1:, 1:] = image.cumsum(0).cumsum(1)
    r0, r1, c0, c1 = r0[:, None], r1[:, None], c0[None, :], c1[None, :]
    total = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    return total / ((r1 - r0) * (c1 - c0))


def _boxes(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) source indices covered by each of `target` output pixels, never empty."""
    index = np.arange(target)
    starts = (index * source) // target
    ends = np.maximum(((index + 1) * source) // target, starts + 1)
    return starts, ends


def _border_mean(image: np.ndarray) -> float:
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return float(border.mean())


def _jpeg_size(body: bytes) -> tuple[int, int]:
    """(height, width) from the first SOF marker of a JPEG stream."""
    position = 2
    while position + 4 <= len(body):
        if body[position] != 0xFF:
            raise ValueError("the JPEG is corrupt (no marker where one should be)")
        marker = body[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        (length,) = struct.unpack(">H", body[position + 2 : position + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if position + 9 > len(body):
                break
            height, width = struct.unpack(">HH", body[position + 5 : position + 9])
            return height, width
        position += 2 + length
    raise ValueError("the JPEG has no frame header (truncated?)")


def _decode_jpeg(body: bytes) -> np.ndarray:
    height, width = _jpeg_size(body)
    if not 0 < height * width <= MAX_JPEG_PIXELS:
        raise ValueError(f"the JPEG is {width}x{height}; at most {MAX_JPEG_PIXELS} pixels are accepted")
    import mxnet as mx  # only JPEG needs it; PNG and the rest of this module stay numpy-only

    from .mxnet_lock import MXNET

    with MXNET:  # MXNet is not thread-safe: see mxnet_lock.py
        try:
            decoded = mx.image.imdecode(body, flag=0, to_rgb=False)
        except mx.base.MXNetError as err:
            raise ValueError(f"the JPEG could not be decoded: {str(err).splitlines()[0]}") from None
        return decoded.asnumpy()
