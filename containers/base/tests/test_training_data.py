"""byoc_runtime.training_data: what a file looks like, declared ContentTypes, truncated gzip, numeric text with
line numbers, streams; and hyperparameter bounds that say the allowed range."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest

from byoc_runtime import training_data as td
from byoc_runtime.codecs import recordio_protobuf
from byoc_runtime.errors import DataError, HyperparameterError
from byoc_runtime.hyperparameters import Param, validate
from byoc_runtime.training_env import Channel

RECORDIO = "application/x-recordio-protobuf"
NEWLINE = b"\n"


@pytest.mark.parametrize(
    "head, kind, phrase",
    [
        (b"", "empty", "an empty file"),
        (recordio_protobuf.write_dense(np.ones((1, 2), np.float32)), "recordio", "recordIO-protobuf"),
        (gzip.compress(b"x"), "gzip", "gzip-compressed data"),
        (b"PK\x03\x04rest", "zip", "a zip archive (.npz)"),
        (b"\x93NUMPY\x01\x00", "npy", "a NumPy .npy array"),
        (b"\x89PNG\r\n\x1a\nxxxx", "png", "a PNG image"),
        (b"\xff\xd8\xff\xe0", "jpeg", "a JPEG image"),
        (b"\x00\x00\x08\x03\x00\x00\xea\x60", "idx", "an IDX array (the MNIST format)"),
        (b"1,0.5,2\n3,4,5\n", "text", "CSV text ('1,0.5,2')"),
        (b"196\t242\t3\n", "text", "tab-separated text ('196\\t242\\t3')"),
        (b"1::2::5\n", "text", "'::'-separated text ('1::2::5')"),
        ("Amélie\n".encode("latin-1"), "text", "text ('Am\ufffdlie')"),
        (b"\x01\x02\x03\xff", "binary", "binary data (first bytes 01 02 03 ff)"),
    ],
)
def test_kind_of_and_describe(head, kind, phrase):
    assert td.kind_of(head[: td.HEAD_BYTES]) == kind
    assert td.describe(head[: td.HEAD_BYTES]).startswith(phrase)


def test_declared_content_types():
    assert td.declared_kind("application/x-recordio-protobuf; charset=binary") == "recordio"
    assert td.declared_kind("text/csv") == "text" and td.declared_kind("image/webp") == "image"
    assert td.declared_kind(None) is None and td.declared_kind("application/octet-stream") is None


def test_check_file_kind_says_what_was_declared_and_what_the_file_is():
    with pytest.raises(DataError) as error:
        td.check_file_kind("train", RECORDIO, "data.csv", b"1,2,3\n", ("recordio",), "use text/csv")
    assert str(error.value) == (
        f"Channel 'train' is declared {RECORDIO} but data.csv looks like CSV text ('1,2,3'); use text/csv"
    )
    with pytest.raises(DataError, match=r"^Channel 'train': x.gz looks like gzip-compressed data; reads text$"):
        td.check_file_kind("train", None, "x.gz", gzip.compress(b"1"), ("text",), "reads text")
    with pytest.raises(DataError, match=r"x.rec \(declared application/x-recordio-protobuf\) looks like recordIO"):
        td.check_file_kind("train", RECORDIO, "x.rec", td.RECORDIO_MAGIC + b"\0" * 4, ("text",), "reads text")
    assert td.check_file_kind("train", "text/csv", "a.csv", b"1,2\n", ("text",), "") == "text"
    assert td.check_file_kind("train", "image/png", "a.png", b"\x89PNG\r\n\x1a\n", ("png",), "") == "png"
    assert td.check_file_kind("train", RECORDIO, "empty.rec", b"", ("recordio",), "") == "empty"


def test_channel_files_empty_and_missing(tmp_path):
    assert td.channel_files.__doc__
    with pytest.raises(DataError, match=r"^Channel 'train' is empty: no files in "):
        td.channel_files(Channel("train", tmp_path))
    with pytest.raises(DataError, match=r"^Channel 'train' is empty: .* does not exist$"):
        td.channel_files(Channel("train", tmp_path / "missing"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.csv").write_text("1")
    (tmp_path / ".hidden").write_text("1")
    channel = Channel("train", tmp_path)
    assert [td.relative_name(channel, p) for p in td.channel_files(channel)] == ["sub/b.csv"]


def test_gunzip_whole_multi_member_and_zero_padded():
    assert td.gunzip(gzip.compress(b"abc") + gzip.compress(b"def") + b"\0" * 8, "f.gz") == b"abcdef"
    with pytest.raises(DataError, match=r"^f.gz: 4 bytes of non-gzip data follow the gzip stream at byte 23$"):
        td.gunzip(gzip.compress(b"abc") + b"junk", "f.gz")


def test_gunzip_truncated_says_how_far_it_got_and_names_the_record():
    text = b"".join(b"%d,1,2\n" % i for i in range(20000))
    body = gzip.compress(text)

    def incomplete(data: bytes) -> str:
        return f"line {data.count(NEWLINE) + 1} is the first incomplete one"

    with pytest.raises(DataError) as error:
        td.gunzip(body[: len(body) // 2], "Channel 'train': data.csv.gz", incomplete)
    message = str(error.value)
    got = int(message.split("decompress to ")[1].split()[0])
    assert 0 < got < len(text)
    assert message == (
        f"Channel 'train': data.csv.gz is a truncated gzip file: its {len(body) // 2} bytes decompress to {got} "
        f"bytes and the stream ends early; line {text[:got].count(NEWLINE) + 1} is the first incomplete one"
    )


def test_gunzip_corrupt_is_named():
    body = bytearray(gzip.compress(bytes(range(256)) * 100))
    body[-8] ^= 0xFF  # the CRC32 of the member
    with pytest.raises(
        DataError,
        match=r"^f.gz is a corrupt gzip file \(Error -3 .*\) at compressed bytes \d+\.\.\d+ of \d+, "
        r"after \d+ decompressed bytes$",
    ):
        td.gunzip(bytes(body), "f.gz")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1,2,3\n4,5\n", "f.csv line 2 has 2 columns; line 1 has 3 ('4,5')"),
        ("\n1,2,3\n\n4,x,6\n", "f.csv line 4, column 2: 'x' is not a number"),
        ("1,2,3\n4,nan,6\n", "f.csv line 2, column 2: 'nan' is not a finite number"),
        ("1,2,3\n4,1e999,6\n", "f.csv line 2, column 2: '1e999' is not a finite number"),
    ],
)
def test_numeric_table_names_the_line(text, expected):
    with pytest.raises(DataError) as error:
        td.numeric_table(text, "f.csv")
    assert str(error.value) == expected


def test_numeric_table_reads_fast_and_counts_from_first_line():
    assert td.numeric_table("1, 2\n\n3,4\r\n", "f").tolist() == [[1, 2], [3, 4]]
    assert td.numeric_table("1::2::3\n", "f", delimiter="::").tolist() == [[1, 2, 3]]
    assert td.numeric_table("  \n", "f").shape == (0, 0)
    with pytest.raises(DataError, match=r"^f line 11 has 2 columns; expected 3 \(a reason\)"):
        td.numeric_table("1,2\n", "f", first_line=11, columns=3, why=" (a reason)")
    with pytest.raises(DataError, match=r"^f line 2 has 2 columns; line 1 has 3 \('1::2'\)"):
        td.numeric_table("1::2::3\n1::2\n", "f", delimiter="::")


def test_decode_utf8_names_the_line():
    with pytest.raises(DataError, match=r"^f line 3: byte 0xe9 is not UTF-8 text$"):
        td.decode_utf8(b"a\nb\nAm\xe9lie\n", "f")


def test_text_blocks_are_whole_lines_with_their_numbers():
    body = b"".join(b"line %d\n" % i for i in range(1, 101)) + b"last"
    blocks = list(td.text_blocks(io.BytesIO(body), block_bytes=37))
    assert b"".join(block for _, block in blocks) == body
    for first, block in blocks:
        assert block.startswith(b"line %d\n" % first) or block == b"last"
        assert block.endswith(b"\n") or block == b"last"


def test_peeked_stream_hands_out_the_head_again_and_counts():
    stream = td.PeekedStream(io.BytesIO(b"0123456789" * 10), head_size=16)
    assert stream.head == b"0123456789012345" and stream.position == 0
    assert stream.read(4) == b"0123" and stream.position == 4
    assert stream.read(20) == b"45678901234567890123" and stream.position == 24
    assert len(stream.read()) == 76 and stream.read(5) == b"" and stream.position == 100


def test_recordio_problem_says_it_for_the_file():
    where = "Channel 'train': data.rec"
    assert td.recordio_problem(where, "Truncated recordIO: record 3 at byte 120 declares 40 bytes, 8 remain") == (
        "Channel 'train': data.rec is truncated: record 3 at byte 120 declares 40 bytes, 8 remain"
    )
    assert td.recordio_problem(where, "Record 2 is not a valid aialgs.data.Record protobuf: x", 96) == (
        "Channel 'train': data.rec record 2 at byte 96 is not a valid aialgs.data.Record protobuf: x"
    )
    assert td.recordio_problem(where, "bad magic").startswith(f"{where} is not valid recordIO-protobuf: bad magic")


def test_npy_problem(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((5, 4), np.float32))
    assert td.npy_problem(tmp_path / "a.npy") is None
    body = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(body[:-20])
    assert td.npy_problem(tmp_path / "a.npy", "image") == (
        "is truncated: its header declares shape (5, 4) float32, 80 bytes, but 60 follow; image 3 of 5 is the "
        "first incomplete one"
    )
    (tmp_path / "b.npy").write_bytes(b"not numpy")
    assert td.npy_problem(tmp_path / "b.npy").startswith("is not a NumPy .npy file")


@pytest.mark.parametrize(
    "param, value, expected",
    [
        (Param(int, 64, min=1, max=4096), 0, "0 is below the minimum 1 (allowed: 1 to 4096)"),
        (Param(int, 64, min=1, max=4096), 5000, "5000 is above the maximum 4096 (allowed: 1 to 4096)"),
        (Param(float, 0.1, min=0.0), -0.5, "-0.5 is below the minimum 0 (allowed: 0 or more)"),
        (Param(float, 0.1, max=0.95), 1.5, "1.5 is above the maximum 0.95 (allowed: 0.95 or less)"),
        (Param(float, 0.1, min=1e-8, max=10.0), 0, "0.0 is below the minimum 1e-08 (allowed: 1e-08 to 10)"),
        (Param(list, [64], min=1, max=100), "64,0", "0 is below the minimum 1 (allowed: 1 to 100)"),
    ],
)
def test_out_of_range_hyperparameters_say_the_allowed_range(param, value, expected):
    with pytest.raises(HyperparameterError) as error:
        validate({"x": value}, {"x": param})
    assert str(error.value) == f"Hyperparameter 'x' is invalid: {expected}"
    assert (
        Param(str, "a", choices=("a", "b")).allowed == "allowed: a, b" and Param(int, 1).allowed == "allowed: any value"
    )
