"""Bad training inputs of gluon-cnn: each fails with one line naming the channel, the file and the first
incomplete image (or the hyperparameter and its allowed range), before MXNet is imported."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from byoc_runtime.errors import DataError, HyperparameterError
from byoc_runtime.hyperparameters import validate
from gluon_cnn import data
from gluon_cnn.train import SPEC


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def mnist_channel(tmp_path, images=100, cut=None, compress=True):
    """train-images/labels of `images` 28x28 images; `cut` truncates the images file to that many bytes."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).integers(0, 256, (images, 28, 28))
    body = idx_bytes(x)
    body = gzip.compress(body, compresslevel=1) if compress else body
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(body[:cut] if cut else body)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(images) % 10)))
    return tmp_path


def message_of(path, name="train", content_type=None) -> str:
    with pytest.raises(DataError) as error:
        data.load_channel(path, name, content_type)
    text = str(error.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_a_truncated_gzip_names_the_file_and_the_first_incomplete_image(tmp_path):
    whole = gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, (100, 28, 28))), compresslevel=1)
    message = message_of(mnist_channel(tmp_path, cut=len(whole) // 2))
    assert message.startswith(
        f"Channel 'train': train-images-idx3-ubyte.gz is a truncated gzip file: its {len(whole) // 2} bytes "
        "decompress to "
    )
    assert "and the stream ends early; its header declares shape (100, 28, 28); image " in message
    image = int(message.split("; image ")[1].split()[0])
    assert 30 < image < 70 and "of 100 is the first incomplete one (784 bytes per image after the 16-byte header" in (
        message
    )


def test_a_corrupt_gzip_is_named(tmp_path):
    body = bytearray(gzip.compress(idx_bytes(np.zeros((50, 28, 28))), compresslevel=1))
    body[-6] ^= 0xFF  # the CRC
    mnist_channel(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(bytes(body))
    assert message_of(tmp_path).startswith("Channel 'train': train-images-idx3-ubyte.gz is a corrupt gzip file")


def test_a_truncated_plain_idx_file(tmp_path):
    directory = mnist_channel(tmp_path, compress=False, cut=16 + 784 * 7 + 100)
    (directory / "train-images-idx3-ubyte").write_bytes((directory / "train-images-idx3-ubyte.gz").read_bytes())
    (directory / "train-images-idx3-ubyte.gz").unlink()
    assert message_of(directory) == (
        "Channel 'train': train-images-idx3-ubyte is truncated: its header declares shape (100, 28, 28); image 7 of "
        "100 is the first incomplete one (784 bytes per image after the 16-byte header, 5588 bytes of data present)"
    )


def test_a_truncated_npy_names_the_image(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((10, 28, 28), np.uint8))
    np.save(tmp_path / "labels.npy", np.arange(10))
    body = (tmp_path / "images.npy").read_bytes()
    (tmp_path / "images.npy").write_bytes(body[: len(body) - 784 * 3 - 5])
    assert message_of(tmp_path) == (
        "Channel 'train': images.npy is truncated: its header declares shape (10, 28, 28) uint8, 7840 bytes, but "
        "5483 follow; image 6 of 10 is the first incomplete one"
    )


def test_a_truncated_npz_is_named(tmp_path):
    np.savez(tmp_path / "mnist.npz", x=np.zeros((10, 28, 28), np.uint8), y=np.arange(10))
    body = (tmp_path / "mnist.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(body[: len(body) // 2])
    assert message_of(tmp_path).startswith("Channel 'train': mnist.npz is not a readable .npz archive")


def test_declared_content_type_that_disagrees_with_the_files(tmp_path):
    message = message_of(mnist_channel(tmp_path), content_type="application/x-recordio-protobuf")
    assert message.startswith(
        "Channel 'train' is declared application/x-recordio-protobuf but train-images-idx3-ubyte.gz looks like "
        "gzip-compressed data; gluon-cnn reads MNIST IDX files"
    )


def test_empty_channel_and_files_of_no_known_format(tmp_path):
    empty = tmp_path / "train"
    empty.mkdir()
    assert message_of(empty) == f"Channel 'train' is empty: no files in {empty}"
    (empty / "data.csv").write_text("5,0,0,0\n")
    assert message_of(empty).startswith(
        "Channel 'train' holds no data in a known format (found: data.csv (CSV text ('5,0,0,0')))"
    )


def test_images_and_labels_that_do_not_pair_up(tmp_path):
    mnist_channel(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(99) % 10)))
    assert message_of(tmp_path).startswith(
        "Channel 'train': train-images-idx3-ubyte.gz holds images of shape [100, 28, 28] but "
        "train-labels-idx1-ubyte.gz labels of shape [99]"
    )


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"batch_size": 0}, "Hyperparameter 'batch_size' is invalid: 0 is below the minimum 1 (allowed: 1 to 65536)"),
        (
            {"momentum": 1.5},
            "Hyperparameter 'momentum' is invalid: 1.5 is above the maximum 0.999 (allowed: 0 to 0.999)",
        ),
        ({"network": "rnn"}, "Hyperparameter 'network' is invalid: 'rnn' is not one of mlp, cnn"),
    ],
)
def test_out_of_range_hyperparameters_name_the_range(given, expected):
    with pytest.raises(HyperparameterError) as error:
        validate(given, SPEC)
    assert str(error.value) == expected
