"""Bad training inputs of mxnet-mf: each fails with one line naming the channel, the file and the line (or
the hyperparameter and its allowed range), before MXNet is imported."""

import gzip

import pytest

from byoc_runtime.errors import HyperparameterError
from byoc_runtime.hyperparameters import validate
from mxnet_mf.data import read_ratings
from mxnet_mf.train import SPEC
from tests.training_inputs import channel_with, one_line_error

channel = channel_with
message_of = one_line_error


@pytest.mark.parametrize(
    "name, body, expected",
    [
        ("u.data", b"1\t2\t3\t9\n\n1\t3\tx\t9\n", "u.data line 3: the rating 'x' is not a number"),
        ("u.data", b"1\t2\t3\t9\n1\t3\t4\n", "u.data line 2 has 3 fields, line 1 has 4 (separated by '\\t')"),
        ("ratings.dat", b"1::2::3::9\n1::2\n", "ratings.dat line 2: expected user, item, rating[, timestamp]"),
        ("ratings.csv", b"userId,movieId,rating\n1,2,4\n1,3,inf\n", "ratings.csv line 3: the rating 'inf' is not a"),
        ("sub/u1.base", b"1\t2\t3\n1\t3\t\n", "sub/u1.base line 2: the rating '' is not a number"),
    ],
    ids=["non-numeric", "ragged", "short", "infinite", "empty-cell"],
)
def test_a_bad_row_names_channel_file_and_line(tmp_path, name, body, expected):
    message = message_of(lambda: read_ratings(channel(tmp_path, {name: body})))
    assert message.startswith(f"Channel 'train': {expected}"), message


def test_recordio_content_type_for_text_says_both(tmp_path):
    ch = channel(tmp_path, {"u.data": b"196\t242\t3\t881250949\n"}, "application/x-recordio-protobuf")
    assert message_of(lambda: read_ratings(ch)).startswith(
        "Channel 'train' is declared application/x-recordio-protobuf but u.data looks like tab-separated text "
        "('196\\t242\\t3\\t881250949'); mxnet-mf reads MovieLens rating text"
    )


def test_binary_files_are_named_with_what_they_look_like(tmp_path):
    ch = channel(tmp_path, {"u.data.gz": gzip.compress(b"1\t2\t3\n")}, "text/csv")
    assert message_of(lambda: read_ratings(ch)).startswith(
        "Channel 'train' is declared text/csv but u.data.gz looks like gzip-compressed data"
    )
    ch = channel(tmp_path / "b", {"data.rec": b"\x0a\x23\xd7\xce\x04\x00\x00\x00abcd"})
    assert message_of(lambda: read_ratings(ch)).startswith(
        "Channel 'train': data.rec looks like recordIO-protobuf (it starts with the recordIO magic number); mxnet-mf"
    )


def test_empty_channel_and_empty_file(tmp_path):
    empty = channel(tmp_path, {})
    assert message_of(lambda: read_ratings(empty)) == f"Channel 'train' is empty: no files in {empty.path}"
    ch = channel(tmp_path / "b", {"u.data": b"\n\n"})
    assert message_of(lambda: read_ratings(ch)) == "Channel 'train': u.data has no rating rows"


@pytest.mark.parametrize(
    "given, expected",
    [
        ({"num_factors": 0}, "Hyperparameter 'num_factors' is invalid: 0 is below the minimum 1 (allowed: 1 to 4096)"),
        ({"dropout": 0.99}, "Hyperparameter 'dropout' is invalid: 0.99 is above the maximum 0.95 (allowed: 0 to 0.95)"),
        (
            {"learning_rate": 0},
            "Hyperparameter 'learning_rate' is invalid: 0.0 is below the minimum 1e-08 (allowed: 1e-08 to 10)",
        ),
        (
            {"hidden_units": "64,70000"},
            "Hyperparameter 'hidden_units' is invalid: 70000 is above the maximum 65536 (allowed: 1 to 65536)",
        ),
    ],
)
def test_out_of_range_hyperparameters_name_the_range(given, expected):
    with pytest.raises(HyperparameterError) as error:
        validate(given, SPEC)
    assert str(error.value) == expected
