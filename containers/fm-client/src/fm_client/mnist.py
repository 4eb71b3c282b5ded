"""MNIST / Fashion-MNIST IDX files -> the course's "is this digit a 0" binary task (pixels in [0, 1])."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# 3,000 training and 1,000 test images of MNIST (CC BY-SA 3.0, Yann LeCun and Corinna Cortes), shipped for
# tests and the demo; the full set is read from any directory holding the four IDX files.
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "mnist-sample"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzip or raw) as a numpy array: images (n, rows * cols) uint8, labels (n,) uint8."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4").astype(int)
    data = np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {tuple(dims)}, found {data.size} values")
    return data.reshape(dims[0], -1) if ndim > 1 else data


def load_binary(
    directory: str | Path, split: str = "train", digit: int = 0, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels float32 in [0, 1], labels float32: 1 where the digit is `digit`) of the train or test split."""
    images_name, labels_name = FILES[split]
    images = read_idx(Path(directory) / images_name)[:limit]
    labels = read_idx(Path(directory) / labels_name)[:limit]
    return (images.astype(np.float32) / 255.0), (labels == digit).astype(np.float32)


# The "is it a 0" job on the shipped sample: the course's num_factors and mini_batch_size, more epochs and
# larger linear/factor learning rates than the built-in's defaults (bench/fm.py measures why).
SAMPLE_HYPERPARAMETERS = {
    "feature_dim": 784,
    "num_factors": 10,
    "predictor_type": "binary_classifier",
    "mini_batch_size": 200,
    "epochs": 8,
    "linear_lr": 0.01,
    "factors_lr": 0.01,
    "factors_init_sigma": 0.01,
}
