"""Bad training inputs of ncf-tf: each fails with one line naming the channel, the file and the line or row
(or the hyperparameter and its allowed range), before TensorFlow is imported."""

from __future__ import annotations

import numpy as np
import pytest

from byoc_runtime.errors import HyperparameterError
from byoc_runtime.hyperparameters import validate
from ncf_tf import prep
from ncf_tf.train import SPEC
from tests.training_inputs import channel_with, one_line_error


def channel_dir(tmp_path, files, name="training"):
    return channel_with(tmp_path, files, name=name).path


def message_of(directory, **kwargs) -> str:
    return one_line_error(lambda: prep.load_channel(directory, 1, 0.0, **kwargs))


@pytest.mark.parametrize(
    "name, body, expected",
    [
        ("ratings.dat", b"1::2::5::10\n\n1::3::4\n", "ratings.dat line 3 has 3 columns; line 1 has 4 ('1::3::4')"),
        ("ratings.csv", b"userId,movieId,rating\n1,2,5\n1,x,4\n", "ratings.csv line 3, column 2: 'x' is not a number"),
        ("u.data", b"1\t2\t5\t9\n1\t3\tnan\t9\n", "u.data line 2, column 3: 'nan' is not a finite number"),
        ("u.data", b"1\t2\n", "u.data line 1 has 2 columns; a ratings file needs at least 3"),
    ],
    ids=["ragged", "non-numeric", "nan", "narrow"],
)
def test_a_bad_ratings_line_is_named(tmp_path, name, body, expected):
    assert message_of(channel_dir(tmp_path, {name: body})).startswith(f"Channel 'training': {expected}")


def test_a_declared_recordio_channel_of_text_says_both(tmp_path):
    directory = channel_dir(tmp_path, {"ratings.dat": b"1::2::5::10\n"})
    assert message_of(directory, content_type="application/x-recordio-protobuf").startswith(
        "Channel 'training' is declared application/x-recordio-protobuf but ratings.dat looks like '::'-separated "
        "text ('1::2::5::10'); ncf-tf reads"
    )


def test_a_truncated_train_npy_names_the_first_incomplete_row(tmp_path):
    directory = channel_dir(tmp_path, {})
    np.save(directory / "train.npy", np.array([[0, 1, 1], [1, 2, 0], [2, 3, 1]], np.int64))
    whole = (directory / "train.npy").read_bytes()
    (directory / "train.npy").write_bytes(whole[:-30])
    assert message_of(directory) == (
        "Channel 'training': train.npy is truncated: its header declares shape (3, 3) int64, 72 bytes, but 42 "
        "follow; row 1 of 3 is the first incomplete one"
    )


def test_a_bad_label_row_in_train_npy(tmp_path):
    directory = channel_dir(tmp_path, {})
    np.save(directory / "train.npy", np.array([[0, 1, 1], [1, 2, 7]], np.int64))
    assert message_of(directory).startswith("Channel 'training': train.npy row 1 is [1, 2, 7]: users and items")


def test_empty_channel_and_unknown_files(tmp_path):
    empty = channel_dir(tmp_path, {})
    assert message_of(empty) == f"Channel 'training' is empty: no files in {empty}"
    other = channel_dir(tmp_path / "b", {"notes.txt": b"hello"})
    assert message_of(other).startswith("Channel 'training' holds no MovieLens ratings file")


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"factors": 0}, "Hyperparameter 'factors' is invalid: 0 is below the minimum 1 (allowed: 1 to 1024)"),
        ({"num_neg": 101}, "Hyperparameter 'num_neg' is invalid: 101 is above the maximum 100 (allowed: 1 to 100)"),
        ({"seed": -1}, "Hyperparameter 'seed' is invalid: -1 is below the minimum 0 (allowed: 0 or more)"),
    ],
)
def test_out_of_range_hyperparameters_name_the_range(given, expected):
    with pytest.raises(HyperparameterError) as error:
        validate(given, SPEC)
    assert str(error.value) == expected
