"""Loading channels: IDX (as published), npz/npy, image folders, and the errors that name the problem."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from byoc_runtime.errors import DataError
from gluon_cnn import augment, data

SAMPLE = Path(__file__).resolve().parents[1] / "sample"


def _write_idx(path, array, compress=True):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def test_shipped_sample_reads_as_published():
    train = data.load_channel(SAMPLE / "mnist", "train")
    test = data.load_channel(SAMPLE / "mnist", "test")
    assert train.images.shape == (2000, 28, 28) and train.images.dtype == np.uint8
    assert len(test) == 500 and set(np.unique(train.labels)) == set(range(10))


def test_plain_idx_and_split_by_prefix(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte", x, compress=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(6))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x[:2])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(2))
    assert len(data.load_channel(tmp_path, "train")) == 6
    assert len(data.load_channel(tmp_path, "test")) == 2


def test_idx_size_mismatch_is_a_data_error(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(struct.pack(">BBBBI", 0, 0, 8, 1, 5) + b"\0"))
    with pytest.raises(DataError, match="declares shape"):
        data.load_channel(tmp_path)


def test_npz_and_npy(tmp_path):
    x = np.random.default_rng(1).random((4, 784))  # floats in [0, 1], flat
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(4))
    dataset = data.load_channel(tmp_path)
    assert dataset.images.shape == (4, 28, 28) and dataset.images.dtype == np.uint8
    other = tmp_path / "npy"
    other.mkdir()
    np.save(other / "images.npy", np.zeros((3, 1, 28, 28), np.uint8))
    np.save(other / "labels.npy", np.array([1, 2, 3]))
    assert data.load_channel(other).labels.tolist() == [1, 2, 3]


def test_pickled_arrays_are_refused(tmp_path):
    np.save(tmp_path / "images.npy", np.array([object()], dtype=object), allow_pickle=True)
    np.save(tmp_path / "labels.npy", np.arange(1))
    with pytest.raises(DataError, match="object arrays"):
        data.load_channel(tmp_path)


def test_image_folders(tmp_path):
    for name, value in (("cat", 0), ("dog", 255)):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((30, 30), value, np.uint8)).save(tmp_path / name / f"{i}.png")
    dataset = data.load_channel(tmp_path)
    assert dataset.class_names == ("cat", "dog") and sorted(dataset.labels.tolist()) == [0, 0, 1, 1]


def test_an_unreadable_image_in_a_folder_names_it(tmp_path):
    (tmp_path / "cat").mkdir()
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(buffer, "PNG")
    (tmp_path / "cat" / "0.png").write_bytes(buffer.getvalue()[:-20])
    with pytest.raises(DataError, match=r"cat/0.png could not be read: the PNG is corrupt or truncated"):
        data.load_channel(tmp_path)


def test_unknown_format_says_what_is_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        data.load_channel(tmp_path)


def test_augment_shifts_and_flips_keep_shape():
    x = np.zeros((50, 28, 28), np.uint8)
    x[:, 10:18, 4:8] = 255
    out = augment.augment(x, np.random.default_rng(0), shift=2, flip=True)
    assert out.shape == x.shape and out.dtype == np.uint8
    assert (out.reshape(50, -1).sum(1) == x.reshape(50, -1).sum(1)).all()  # shifts of 2 keep the stroke
    assert not np.array_equal(out, x)


def test_augment_shift_moves_each_image_by_at_most_two_pixels_without_flipping():
    rng = np.random.default_rng(3)
    x = rng.integers(1, 256, (200, 28, 28), dtype=np.uint8)
    x[:, :2], x[:, -2:], x[:, :, :2], x[:, :, -2:] = 0, 0, 0, 0  # an empty 2-pixel border, as MNIST's
    out = augment.augment(x, np.random.default_rng(0), shift=2)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    offsets = set()
    for i in range(len(x)):
        shifts = [(dy, dx) for dy in range(5) for dx in range(5)]
        found = [(dy, dx) for dy, dx in shifts if np.array_equal(out[i], padded[i, dy : dy + 28, dx : dx + 28])]
        assert found, i  # a shifted copy of its own image: never another image's, never mirrored
        offsets.add(found[0])
    assert len(offsets) > 15  # the 25 offsets are all drawn
