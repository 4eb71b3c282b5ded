"""Per-epoch data augmentation on the uint8 images, vectorised in numpy: random shifts of up to `shift`
pixels (zero fill), and for data without a handedness (clothes, not digits) random horizontal flips."""

from __future__ import annotations

import numpy as np


def augment(images: np.ndarray, rng: np.random.Generator, shift: int = 2, flip: bool = False) -> np.ndarray:
    n, height, width = images.shape
    out = images
    if shift:
        # One slice copy per (dy, dx) of the (2 * shift + 1)^2 offsets, over the images drawn for it: about
        # 3x faster than a gather of every pixel (60,000 images: ~0.15 s instead of ~0.5 s).
        padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift)))
        side = 2 * shift + 1
        offset = rng.integers(0, side * side, n)
        out = np.empty_like(images)
        for k in range(side * side):
            chosen = np.flatnonzero(offset == k)
            dy, dx = divmod(k, side)
            out[chosen] = padded[chosen, dy : dy + height, dx : dx + width]
    if flip:
        mirrored = rng.random(n) < 0.5
        out = out.copy() if out is images else out
        out[mirrored] = out[mirrored, :, ::-1]
    return out
