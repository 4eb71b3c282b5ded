"""The linear test family's channel reading, in-process: bad CSV and recordIO name the file and the line or
record, a ContentType that disagrees with the files says both."""

from __future__ import annotations

import numpy as np
import pytest

from byoc_runtime.codecs import recordio_protobuf
from linear_family.train import read_channel
from tests.training_inputs import channel_with, one_line_error

RECORDIO = "application/x-recordio-protobuf"


def channel(tmp_path, files, content_type="text/csv"):
    return channel_with(tmp_path, files, content_type)


def message_of(ch) -> str:
    return one_line_error(lambda: read_channel(ch))


def test_reads_csv_and_recordio(tmp_path):
    x, y = read_channel(channel(tmp_path, {"a.csv": b"1,2,3\n\n4,5,6\n", "b.csv": b"7,8,9\n"}))
    assert x.tolist() == [[2, 3], [5, 6], [8, 9]] and y.tolist() == [1, 4, 7]
    body = recordio_protobuf.write_dense(np.ones((3, 2), np.float32), np.arange(3, dtype=np.float32))
    x, y = read_channel(channel(tmp_path / "r", {"a.rec": body}, RECORDIO))
    assert x.shape == (3, 2) and y.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"a.csv": b"1,2,3\n4,5,abc\n"}, "Channel 'train': a.csv line 2, column 3: 'abc' is not a number"),
        ({"a.csv": b"1,2,3\n4,5\n"}, "Channel 'train': a.csv line 2 has 2 columns; line 1 has 3 ('4,5')"),
        (
            {"a.csv": b"1,2,3\n", "b.csv": b"\n1,2\n"},
            "Channel 'train': b.csv line 2 has 2 columns; expected 3 (as in the channel's first file) ('1,2')",
        ),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, files, expected):
    assert message_of(channel(tmp_path, files)) == expected


def test_truncated_recordio_names_record_and_byte(tmp_path):
    body = recordio_protobuf.write_dense(np.ones((3, 2), np.float32), np.zeros(3, np.float32))
    message = message_of(channel(tmp_path, {"a.rec": body[:-5]}, RECORDIO))
    assert message.startswith("Channel 'train': a.rec is truncated: record 2 at byte ")
    no_labels = recordio_protobuf.write_dense(np.ones((3, 2), np.float32))
    assert message_of(channel(tmp_path / "b", {"b.rec": no_labels}, RECORDIO)).endswith("training needs one per record")


def test_content_type_that_disagrees(tmp_path):
    assert message_of(channel(tmp_path, {"a.csv": b"1,2,3\n"}, RECORDIO)).startswith(
        f"Channel 'train' is declared {RECORDIO} but a.csv looks like CSV text ('1,2,3')"
    )
