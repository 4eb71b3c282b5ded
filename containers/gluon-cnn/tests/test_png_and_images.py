"""The PNG reader (round trips, filters, refusals) and the image -> 28x28 MNIST-convention conversion."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from gluon_cnn import images, png


def _png(raw_rows: bytes, width: int, height: int, colour: int, depth: int = 8, extra: bytes = b"") -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return png.SIGNATURE + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw_rows)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("shape", [(5, 7), (3, 4, 3), (6, 2, 4)])
def test_round_trip(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = png.decode(png.encode(image))
    assert np.array_equal(decoded.reshape(image.shape), image)


def _filter(rows: np.ndarray, kind: int, bpp: int) -> bytes:
    """Apply PNG filter `kind` to every row (the encoder side), to test the decoder's unfiltering."""
    out, previous = b"", np.zeros(rows.shape[1], np.int32)
    for row in rows.astype(np.int32):
        left = np.r_[np.zeros(bpp, np.int32), row[:-bpp]]
        upper_left = np.r_[np.zeros(bpp, np.int32), previous[:-bpp]]
        if kind == 1:
            predictor = left
        elif kind == 2:
            predictor = previous
        elif kind == 3:
            predictor = (left + previous) // 2
        else:
            predictor = png._paeth(left, previous, upper_left)
        out += bytes([kind]) + ((row - predictor) % 256).astype(np.uint8).tobytes()
        previous = row
    return out


@pytest.mark.parametrize("kind", [1, 2, 3, 4])
def test_every_filter_type_rgb(kind):
    image = np.random.default_rng(kind).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    body = _png(_filter(image.reshape(9, -1), kind, 3), 11, 9, colour=2)
    assert np.array_equal(png.decode(body), image)


def test_palette_image():
    palette = bytes([0, 0, 0, 255, 255, 255, 10, 20, 30])
    plte = struct.pack(">I", len(palette)) + b"PLTE" + palette + struct.pack(">I", zlib.crc32(b"PLTE" + palette))
    indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    body = _png(b"".join(b"\x00" + r.tobytes() for r in indices), 3, 2, colour=3, extra=plte)
    assert png.decode(body)[0, 2].tolist() == [10, 20, 30]


@pytest.mark.parametrize(
    "body, message",
    [
        (b"GIF89a", "signature"),
        (png.encode(np.zeros((4, 4), np.uint8))[:-12], "IEND|truncated"),
        (_png(b"\x00" * 10, 4, 4, colour=0, depth=16), "bit depth"),
        (_png(b"\x00" * 5, 4, 4, colour=0), "bytes, expected"),
        (_png(b"\x00" * (3000 * 3001), 3000, 3000, colour=0), "pixels are accepted"),
        (_png(b"\x07" + b"\x00" * 4, 4, 1, colour=0), "filter type"),
    ],
)
def test_refusals_are_value_errors(body, message):
    with pytest.raises(ValueError, match=message):
        png.decode(body)


def test_bad_crc_is_refused():
    body = bytearray(png.encode(np.zeros((4, 4), np.uint8)))
    body[20] ^= 0xFF  # inside IHDR
    with pytest.raises(ValueError, match="CRC"):
        png.decode(bytes(body))


def test_decompression_bomb_is_capped():
    # 1 MB of zeros declared as a 16x16 image: inflating stops at the expected size.
    body = _png(b"\x00" * 1_000_000, 16, 16, colour=0)
    with pytest.raises(ValueError, match="expected"):
        png.decode(body)


def test_dark_digit_on_white_paper_becomes_mnist_style():
    paper = np.full((84, 84), 255, np.uint8)
    paper[20:64, 38:46] = 0  # a dark vertical stroke
    x = images.decode(png.encode(paper))
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert x[0, 0] == pytest.approx(0.0) and x[14, 14] == pytest.approx(1.0)


def test_transparent_background_counts_as_paper():
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[10:18, 10:18] = [0, 0, 0, 255]  # opaque black square, the rest transparent
    x = images.decode(png.encode(rgba))
    assert x[0, 0] == pytest.approx(0.0) and x[12, 12] == pytest.approx(1.0)


def test_resize_area_average_and_enlarge():
    image = np.arange(16, dtype=float).reshape(4, 4)
    assert np.allclose(images.resize(image, 2, 2), [[2.5, 4.5], [10.5, 12.5]])
    assert images.resize(image, 8, 8)[7, 7] == 15 and images.resize(image, 8, 8).shape == (8, 8)


def test_jpeg_size_is_read_before_decoding():
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 5000, 6000, 1) + b"\x01\x11\x00"
    body = b"\xff\xd8" + sof + b"\xff\xd9"
    assert images._jpeg_size(body) == (5000, 6000)
    with pytest.raises(ValueError, match="pixels are accepted"):
        images.decode(body)


def test_neither_png_nor_jpeg():
    with pytest.raises(ValueError, match="neither"):
        images.decode(b"BM....")
