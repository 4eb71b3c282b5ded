"""Per-epoch data augmentation on the uint8 images, vectorised in numpy: random shifts of up to `shift`
pixels (zero fill), and for data without a handedness (clothes, not digits) random horizontal flips."""

from __future__ import annotations

import numpy as np


def augment(images: np.ndarray, rng: np.random.Generator, shift: int = 2, flip: bool = False) -> np.ndarray:
    n, height, width = images.shape
    out = images
    if shift:
        padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift)))
        dy = rng.integers(0, 2 * shift + 1, n)
        dx = rng.integers(0, 2 * shift + 1, n)
        rows = (dy[:, None] + np.arange(height))[:, :, None]
        cols = (dx[:, None] + np.arange(width))[:, None, :]
        out = padded[np.arange(n)[:, None, None], rows, cols]
    if flip:
        mirrored = rng.random(n) < 0.5
        out = out.copy() if out is images else out
        out[mirrored] = out[mirrored, :, ::-1]
    return out
