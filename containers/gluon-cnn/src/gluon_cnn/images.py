"""Raw images (PNG, JPEG) -> one 28x28 grey image in MNIST's convention: light strokes on a dark background.

Both formats are decoded by Pillow (no parser of our own for untrusted bytes, and no MXNet: decoding runs
in parallel with the forward passes, outside mxnet_lock). Bombs are refused before anything is decoded:
the body's size first, then the dimensions from the header (Image.open reads only the header) against
MAX_PIXELS and the raster Pillow would allocate against MAX_DECODED_BYTES; a PNG's chunks (CRCs, IEND)
are checked with Pillow's verify() before its pixels are inflated. Every refusal is an ImageError (a
ValueError): ImageTooLarge for the size limits, the rest for what is not a readable PNG or JPEG.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, JpegImagePlugin, PngImagePlugin  # noqa: F401 - the two plugins, registered up front

SIDE = 28
MAX_SIDE = 2048
MAX_PIXELS = MAX_SIDE * MAX_SIDE
MAX_IMAGE_BYTES = 16 * 1024 * 1024  # an encoded image (the runtime's own body limit is SAGEMAKER_MAX_PAYLOAD_IN_MB)
MAX_DECODED_BYTES = MAX_PIXELS * 4  # Pillow's raster: 4 bytes a pixel for RGB(A)/CMYK, fewer for grey
_LIMIT = f"at most {MAX_SIDE}x{MAX_SIDE} ({MAX_PIXELS} pixels) are accepted"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"

# Pillow's own guard, process-wide: it warns above this many pixels and raises DecompressionBombError above
# twice as many, inside Image.open; _check_size refuses everything above MAX_PIXELS with our message.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Its warning (between MAX_PIXELS and twice that) becomes the error it warns of: a refusal, not a log line.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
# What Pillow raises for a corrupt or truncated file: OSError (UnidentifiedImageError, "image file is
# truncated", decoder errors), SyntaxError (broken PNG chunks, bad CRCs), and the rest from its parsers.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError, KeyError)
_FOUR_BYTES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "LA", "La", "PA")


class ImageError(ValueError):
    """The body is not a PNG or JPEG we can read (a 400 when serving, a DataError when training)."""


class ImageTooLarge(ImageError):
    """The body, or the image it declares, is over a size limit (a 413 when serving)."""


def is_png(body: bytes) -> bool:
    return body[:8] == PNG_SIGNATURE


def is_jpeg(body: bytes) -> bool:
    return body[:3] == JPEG_SIGNATURE


def decode(body: bytes) -> np.ndarray:
    """Image bytes (PNG or JPEG) -> float32 (28, 28) in [0, 1], light strokes on dark."""
    return to_mnist(read(body))


def read(body: bytes) -> np.ndarray:
    """PNG or JPEG bytes -> uint8 (height, width) grey or (height, width, channels) with 2 (grey+alpha),
    3 (RGB) or 4 (RGBA) channels; 16-bit samples scaled to 8 bits, palettes and tRNS transparency applied."""
    if len(body) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"the image is {len(body)} bytes; at most {MAX_IMAGE_BYTES} bytes are accepted")
    if is_png(body):
        kind = "PNG"
    elif is_jpeg(body):
        kind = "JPEG"
    else:
        raise ImageError("the body is neither a PNG nor a JPEG image")
    try:
        if kind == "PNG":
            with _open(body, kind) as image:
                image.verify()  # every chunk's CRC and the IEND chunk, reading the image data without inflating it
        with _open(body, kind) as image:
            image.load()
            return _pixels(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own guard, in Image.open
        raise ImageTooLarge(f"the {kind} has more than {MAX_PIXELS} pixels; {_LIMIT}") from None
    except _DECODE_ERRORS as err:
        raise ImageError(f"the {kind} is corrupt or truncated ({_reason(err)})") from None


def _open(body: bytes, kind: str) -> Image.Image:
    """Image.open (the header only), then the size limits, before anything allocates the raster."""
    image = Image.open(io.BytesIO(body), formats=(kind,))
    try:
        _check_size(image, kind)
    except ImageTooLarge:
        image.close()
        raise
    return image


def _check_size(image: Image.Image, kind: str) -> None:
    width, height = image.size
    if not 0 < width * height <= MAX_PIXELS:
        raise ImageTooLarge(f"the {kind} is {width}x{height} pixels; {_LIMIT}")
    raster = width * height * _bytes_per_pixel(image.mode)
    if raster > MAX_DECODED_BYTES:
        raise ImageTooLarge(f"the {kind} would decode to {raster} bytes; at most {MAX_DECODED_BYTES} are accepted")


def _bytes_per_pixel(mode: str) -> int:
    """Pillow's storage for a pixel of `mode` (multi-band and 32-bit modes take 4 bytes)."""
    if mode.startswith("I;16"):
        return 2
    return 4 if mode in _FOUR_BYTES else 1


def _reason(err: Exception) -> str:
    if isinstance(err, Image.UnidentifiedImageError):
        return "its header cannot be read"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]


def _pixels(image: Image.Image) -> np.ndarray:
    """A loaded Pillow image -> uint8 grey, grey+alpha, RGB or RGBA array."""
    mode, transparency = image.mode, image.info.get("transparency")
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grey PNG: scale, do not clip (Pillow's "L")
        wide = np.asarray(image).astype(np.int64)
        grey = ((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
        if isinstance(transparency, int):
            return np.dstack([grey, np.where(wide == transparency, 0, 255).astype(np.uint8)])
        return grey
    if mode in ("L", "RGB") and transparency is not None:  # a tRNS colour: those pixels are transparent
        image = image.convert("LA" if mode == "L" else "RGBA")
    elif mode in ("P", "PA"):
        image = image.convert("RGBA" if mode == "PA" or transparency is not None else "RGB")
    elif mode == "1":
        image = image.convert("L")
    elif mode in ("La", "RGBa"):
        image = image.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):  # CMYK or YCbCr JPEGs, and anything else Pillow may hand us
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


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
