"""Request and channel images, decoded by Pillow: every PNG kind (16-bit, interlaced, palette, alpha) and
JPEG, refusals of corrupt and truncated files as ImageError, bombs refused from the header alone (fast and
without allocating), and the image -> 28x28 MNIST-convention conversion."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from png_fixtures import bomb, declaring, encode, png

from gluon_cnn import images
from gluon_cnn.mxnet_lock import MXNET

# Pillow warns (DecompressionBombWarning) between MAX_PIXELS and twice that, where our own check refuses.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "mnist"
DIGITS = np.frombuffer(gzip.open(SAMPLE / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)


def _paper(i: int = 0, scale: int = 3) -> np.ndarray:
    """Test digit i as a dark digit on white paper, `scale` times larger, uint8 grey."""
    return 255 - np.kron(DIGITS[i], np.ones((scale, scale), np.uint8))


# --- every kind of PNG decodes to the same pixels as its 8-bit original -------------------------------------


@pytest.mark.parametrize("interlaced", [False, True])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_pngs_scale_to_their_8_bit_originals(channels, interlaced):
    rng = np.random.default_rng(channels)
    original = rng.integers(0, 256, (17, 13, channels), dtype=np.uint8)
    wide = original.astype(np.uint16) * 257  # what an editor's "16 bits per channel" makes of 8-bit samples
    read = images.read(png(wide, interlaced=interlaced))
    if channels == 2:  # Pillow reads 16-bit grey+alpha as RGBA, with R = G = B
        assert np.array_equal(read[:, :, [0, 3]], original) and (read[:, :, 0:1] == read[:, :, 1:3]).all()
    else:
        assert np.array_equal(read, original[:, :, 0] if channels == 1 else original)


def test_16_bit_grey_is_scaled_not_clipped():
    # Pillow's own I;16 -> L conversion clips: everything above 255 would become white.
    wide = np.array([[0, 256, 32896, 65535]], np.uint16)  # 32896 = 128 * 257
    assert images.read(encode(wide)).tolist() == [[0, 1, 128, 255]]
    assert images.read(png(wide)).tolist() == [[0, 1, 128, 255]]


def test_16_bit_grey_digit_is_the_8_bit_digit():
    paper = _paper()
    wide = encode(paper.astype(np.uint16) * 257)
    assert Image.open(io.BytesIO(wide)).mode == "I;16"
    assert np.array_equal(images.decode(wide), images.decode(encode(paper)))


@pytest.mark.parametrize("shape", [(28, 28), (84, 84, 3), (30, 31, 4), (5, 9, 2), (1, 1), (3, 2, 3)])
def test_interlaced_pngs_equal_their_originals(shape):
    original = np.random.default_rng(len(shape)).integers(0, 256, shape, dtype=np.uint8)
    assert np.array_equal(images.read(png(original, interlaced=True)), original)
    assert np.array_equal(images.read(png(original)), original)


def test_palette_png_and_its_transparency():
    indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 255, 255, 255, 10, 20, 30])
    assert images.read(encode(image)).tolist()[0] == [[0, 0, 0], [255, 255, 255], [10, 20, 30]]
    with_trns = images.read(encode(image, transparency=0))  # tRNS: index 0 is transparent
    assert with_trns.shape == (2, 3, 4) and with_trns[0, 0, 3] == 0 and with_trns[0, 1, 3] == 255


def test_palette_digit_is_the_grey_digit():
    paper = _paper()
    palette = Image.fromarray(paper).convert("P")  # 256 greys: lossless
    assert np.array_equal(images.decode(encode(palette)), images.decode(encode(paper)))


def test_grey_with_a_trns_colour_is_transparent():
    grey = np.full((4, 4), 7, np.uint8)
    grey[0, 0] = 200
    read = images.read(encode(grey, transparency=7))
    assert read.shape == (4, 4, 2) and read[0, 0].tolist() == [200, 255] and read[1, 1].tolist() == [7, 0]
    wide = encode(grey.astype(np.uint16) * 257, transparency=7 * 257)  # 16-bit grey: tRNS holds a 16-bit value
    assert np.array_equal(images.read(wide), read)


def test_1_bit_png():
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    assert images.read(encode(bits)).tolist() == [[0, 255], [255, 0]]


def test_transparent_background_counts_as_paper():
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[10:18, 10:18] = [0, 0, 0, 255]  # opaque black square, the rest transparent
    x = images.decode(encode(rgba))
    assert x[0, 0] == pytest.approx(0.0) and x[12, 12] == pytest.approx(1.0)


def test_dark_digit_on_white_paper_becomes_mnist_style():
    paper = np.full((84, 84), 255, np.uint8)
    paper[20:64, 38:46] = 0  # a dark vertical stroke
    x = images.decode(encode(paper))
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert x[0, 0] == pytest.approx(0.0) and x[14, 14] == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_jpeg_digit_is_close_to_the_original(mode):
    paper = _paper(1)
    body = encode(Image.fromarray(paper).convert(mode), "JPEG", quality=95)
    assert images.is_jpeg(body)
    difference = np.abs(images.decode(body) - images.decode(encode(paper)))
    assert difference.mean() < 0.01 and difference.max() < 0.1


def test_resize_area_average_and_enlarge():
    image = np.arange(16, dtype=float).reshape(4, 4)
    assert np.allclose(images.resize(image, 2, 2), [[2.5, 4.5], [10.5, 12.5]])
    assert images.resize(image, 8, 8)[7, 7] == 15 and images.resize(image, 8, 8).shape == (8, 8)


# --- refusals: corrupt and truncated files are ImageError (a 400), never another exception ------------------

_DIGIT = encode(_paper())
_JPEG = encode(_paper(), "JPEG")


def _flip(body: bytes, position: int) -> bytes:
    changed = bytearray(body)
    changed[position] ^= 0xFF
    return bytes(changed)


CORRUPT = {
    "png-cut-in-idat": _DIGIT[:-20],
    "png-no-iend": _DIGIT[:-12],
    "png-header-only": _DIGIT[:40],
    "png-iend-damaged": _DIGIT[:-5] + b"\x00" + _DIGIT[-4:],
    "png-idat-crc": _flip(_DIGIT, len(_DIGIT) - 14),
    "png-ihdr-crc": _flip(_DIGIT, 20),
    "png-idat-data-damaged": _flip(_DIGIT, 45),
    "png-signature-then-zeros": png(np.zeros((4, 4), np.uint8))[:8] + b"\x00" * 30,
    "png-0x10": declaring(0, 10),
    "jpeg-half": _JPEG[: len(_JPEG) // 2],
    "jpeg-20-bytes": _JPEG[:20],
    "jpeg-zeros": b"\xff\xd8\xff\xe0" + b"\x00" * 100,
    "jpeg-text": b"\xff\xd8\xff\xe0 truncated jpeg",
}
NEITHER = {"gif": b"GIF89a....", "bm": b"BM....", "text": b"hello", "empty": b"", "bmp": encode(_paper(), "BMP")}


@pytest.mark.parametrize("body", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_and_truncated_images_are_image_errors(body):
    with pytest.raises(images.ImageError, match="corrupt or truncated") as caught:
        images.read(body)
    assert not isinstance(caught.value, images.ImageTooLarge)
    assert "Traceback" not in str(caught.value) and "BytesIO" not in str(caught.value)


@pytest.mark.parametrize("body", NEITHER.values(), ids=NEITHER.keys())
def test_neither_png_nor_jpeg(body):
    with pytest.raises(images.ImageError, match="neither a PNG nor a JPEG"):
        images.read(body)


# --- bombs: refused from the header, fast, nothing allocated ------------------------------------------------


def _refused_quickly(body: bytes) -> tuple[str, float, int]:
    """(message, seconds, tracemalloc peak bytes) of decoding a body that must be refused as too large."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(images.ImageTooLarge) as caught:
            images.decode(body)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(caught.value), seconds, peak


def test_a_50000_square_png_bomb_is_refused_in_a_blink():
    body = bomb(50_000, 50_000)  # ~300 KB of valid deflate that inflate to 312 MB
    assert len(body) < 400_000
    message, seconds, peak = _refused_quickly(body)
    assert "more than 4194304 pixels" in message and "2048x2048" in message
    assert seconds < 1.0 and peak < 50 * 2**20, (seconds, peak)


@pytest.mark.parametrize(
    "body, size",
    [
        (declaring(50_000, 50_000), "more than 4194304 pixels"),  # a few dozen bytes: Pillow's own guard
        (declaring(2049, 2048), "is 2049x2048 pixels"),  # just over: our check after the header
    ],
    ids=["50000x50000", "2049x2048"],
)
def test_declared_sizes_over_the_limit(body, size):
    message, seconds, peak = _refused_quickly(body)
    assert size in message and seconds < 1.0 and peak < 50 * 2**20


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF header claims another size (JPEG has no checksum to break)."""
    body = bytearray(encode(np.zeros((8, 8), np.uint8), "JPEG"))
    sof = body.index(b"\xff\xc0")
    body[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(body)


@pytest.mark.parametrize("width, height", [(65_000, 65_000), (2100, 2100)])
def test_a_jpeg_declaring_a_huge_size_is_refused(width, height):
    message, seconds, peak = _refused_quickly(_jpeg_declaring(width, height))
    assert "JPEG" in message and seconds < 1.0 and peak < 50 * 2**20


def test_the_bomb_allocates_nothing_large_even_in_c():
    """tracemalloc does not see Pillow's C allocations: measure the peak RSS of a fresh interpreter instead."""
    script = (
        "import resource, sys; sys.path[:0] = sys.argv[1:3]\n"
        "from png_fixtures import bomb\n"
        "from gluon_cnn import images\n"
        "body = bomb(50_000, 50_000)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    images.decode(body)\nexcept images.ImageTooLarge:\n    pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    source = str(Path(images.__file__).resolve().parents[1])
    command = [sys.executable, "-c", script, str(Path(__file__).parent), source]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) < 50 * 1024, f"peak RSS grew by {run.stdout.strip()} KiB"  # ru_maxrss is in KiB


def test_a_zlib_bomb_inside_a_small_image_is_not_inflated_past_the_image():
    import struct
    import zlib

    from png_fixtures import SIGNATURE, chunk

    header = struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 20_000_000, 9)  # 20 MB of zeros declared as a 16x16 image: ~20 KB
    body = SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    start = time.perf_counter()
    assert images.read(body).shape == (16, 16)
    assert time.perf_counter() - start < 1.0


def test_body_and_decoded_size_limits(monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", len(_DIGIT) - 1)
    with pytest.raises(images.ImageTooLarge, match=f"the image is {len(_DIGIT)} bytes"):
        images.read(_DIGIT)
    monkeypatch.undo()
    rgb = encode(np.zeros((100, 100, 3), np.uint8))
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 100 * 100 * 4 - 1)  # Pillow holds RGB as 4 bytes a pixel
    with pytest.raises(images.ImageTooLarge, match="would decode to 40000 bytes"):
        images.read(rgb)
    assert images.read(encode(np.zeros((100, 100), np.uint8))).shape == (100, 100)  # grey: 1 byte a pixel


# --- threads: no MXNet, so no MXNet lock; Pillow decodes separate images in parallel ------------------------


def test_decoding_never_waits_for_the_mxnet_lock():
    results = []
    with MXNET:  # held by a forward pass, say
        worker = threading.Thread(target=lambda: results.append(images.decode(_JPEG)))
        worker.start()
        worker.join(10)
        assert not worker.is_alive() and len(results) == 1


def test_concurrent_decodes_agree():
    bodies = [encode(_paper(i)) for i in range(6)] + [encode(_paper(i), "JPEG") for i in range(6)]
    expected = [images.decode(b) for b in bodies]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            assert all(np.array_equal(a, b) for a, b in zip(pool.map(images.decode, bodies), expected, strict=True))
