"""Request bodies -> a batch of images (N, 1, 28, 28) float32 in [0, 1]. No mxnet here (nor its lock).

Accepted shapes, from JSON ({"instances": ...}, {"inputs": ...}, {"data": ...} or a bare array) or NPY:
784, 28x28, 1x28x28 (one image) and Nx784, Nx28x28, Nx1x28x28 (a batch). Pixel values in [0, 1], or
0..255 (an image whose largest value is above 1 is divided by 255). JSON Lines: one image per line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from byoc_runtime import codecs
from byoc_runtime.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

from . import images

SIDE = images.SIDE
IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg")
MAX_IMAGES = 100_000
JSON_LINES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines")


@dataclass(frozen=True)
class Batch:
    images: np.ndarray  # float32 (N, 1, 28, 28)
    verbose: bool = False  # the request asked for probabilities and class names


def parse(body: bytes, content_type: str) -> Batch:
    kind = codecs.media_type(content_type)
    if kind in IMAGE_TYPES:
        try:
            return Batch(images.decode(body)[None, None])
        except images.ImageTooLarge as err:  # decided from the body's size or the image's header: nothing decoded
            raise PayloadTooLarge(f"The image is too large: {err}") from None
        except images.ImageError as err:
            raise BadRequest(f"Could not read the image: {err}") from None
    if kind not in (codecs.JSON, codecs.NPY, "application/npy", *JSON_LINES):
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; use application/json, application/jsonlines "
            "(one image per line: batch transform), application/x-npy, image/png or image/jpeg"
        )
    decoded = codecs.decode(body, kind)
    verbose = False
    if isinstance(decoded, dict):
        verbose = bool(decoded.get("verbose", False))
        if "data" in decoded and not any(k in decoded for k in ("instances", "inputs")):
            decoded = decoded["data"]
    return Batch(to_batch(codecs.instances_of(decoded)), verbose)


def to_batch(values) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadRequest("instances must be arrays of numbers (pixel values), all of the same shape") from None
    pixels = SIDE * SIDE
    shape = array.shape
    if shape in ((pixels,), (SIDE, SIDE), (1, SIDE, SIDE)):
        array = array.reshape(1, 1, SIDE, SIDE)
    elif len(shape) == 2 and shape[1] == pixels or len(shape) == 3 and shape[1:] == (SIDE, SIDE):
        array = array.reshape(-1, 1, SIDE, SIDE)
    elif len(shape) == 4 and shape[1:] == (1, SIDE, SIDE):
        pass
    else:
        raise BadRequest(
            f"expected images of 28x28 pixels (784, 28x28 or 1x28x28, or a batch of those), got shape {list(shape)}"
        )
    if len(array) == 0:
        raise BadRequest("the request holds no images")
    if len(array) > MAX_IMAGES:
        raise BadRequest(f"at most {MAX_IMAGES} images per request, got {len(array)}")
    if not np.isfinite(array).all():
        raise BadRequest("pixel values must be finite numbers")
    peak = array.reshape(len(array), -1).max(axis=1)
    array = array / np.where(peak > 1.0, 255.0, 1.0).astype(np.float32)[:, None, None, None]
    if array.min() < 0.0 or array.max() > 1.0:
        raise BadRequest("pixel values must lie in [0, 1] or in 0..255")
    return np.ascontiguousarray(array, dtype=np.float32)
