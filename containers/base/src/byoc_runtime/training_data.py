"""Reading training channels so that a bad input names itself.

Every family reads its channels through these helpers, so a bad input fails the same way everywhere: a
DataError whose message (the failure file's first line) names the channel, the file (relative to the
channel directory) and where in it: the 1-based line of a text file, the 0-based record and byte offset of
recordIO, the image of an IDX file. Everything here is numpy and the standard library: the checks run before
a family imports its framework, so a bad input fails in seconds.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .codecs import npy_codec, recordio_protobuf
from .errors import DataError
from .training_env import Channel

RECORDIO_MAGIC = struct.pack("<I", recordio_protobuf.RECORDIO_MAGIC)
HEAD_BYTES = 64  # what `kind_of` / `describe` look at
_GZIP_CHUNK = 1 << 20
_REPLAY_STEP = 256
_IDX_TYPES = (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)

# Declared ContentType -> the kind of bytes it promises (kind_of's names). Unknown types promise nothing.
_DECLARED = {
    "application/x-recordio-protobuf": "recordio",
    "application/x-recordio": "recordio",
    "text/csv": "text",
    "text/plain": "text",
    "text/tab-separated-values": "text",
    "application/gzip": "gzip",
    "application/x-gzip": "gzip",
    "application/x-npy": "npy",
    "application/x-npz": "zip",
    "application/zip": "zip",
    "image/png": "png",
    "image/jpeg": "jpeg",
}


# ---------------------------------------------------------------------------------------------- files


def directory_files(directory: Path, channel: str) -> list[Path]:
    """The files of channel `channel` in `directory`, sorted, hidden ones skipped; DataError when none."""
    if not directory.is_dir():
        raise DataError(f"Channel '{channel}' is empty: {directory} does not exist")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"Channel '{channel}' is empty: no files in {directory}")
    return files


def channel_files(channel: Channel) -> list[Path]:
    """The channel's files (see directory_files)."""
    return directory_files(channel.path, channel.name)


def channel_blobs(channel: Channel, pass_number: int = 0) -> list[tuple[str, bytes]]:
    """(name, content) of every file of a channel, named relative to it; in Pipe mode the FIFO of the pass."""
    if channel.is_pipe:
        fifo = channel.pipe_path(pass_number)
        return [(fifo.name, fifo.read_bytes())]
    return [(relative_name(channel, path), path.read_bytes()) for path in channel_files(channel)]


def relative_name(channel: Channel, path: Path) -> str:
    """`path` as the user named it in S3: relative to the channel directory (a Pipe FIFO: its own name)."""
    try:
        return str(path.relative_to(channel.path))
    except ValueError:
        return path.name


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    with open(path, "rb") as file:
        return file.read(size)


# ---------------------------------------------------------------------------------------------- sniffing


def kind_of(head: bytes) -> str:
    """What the first bytes of a file are: recordio, gzip, zip, npy, png, jpeg, idx, text, binary or empty."""
    if not head:
        return "empty"
    if head.startswith(RECORDIO_MAGIC):
        return "recordio"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 4 and head[:2] == b"\x00\x00" and head[2] in _IDX_TYPES and 1 <= head[3] <= 4:
        return "idx"
    return "text" if _is_text(head) else "binary"


def _is_text(head: bytes) -> bool:
    """No control characters but whitespace (bytes >= 0x80 pass: UTF-8 or Latin-1 text)."""
    return not head.translate(None, _TEXT_BYTES)


_TEXT_BYTES = bytes(b for b in range(256) if b >= 0x20 and b != 0x7F) + b"\t\n\r\f\v"


def describe(head: bytes) -> str:
    """A phrase for what a file looks like, for messages: "CSV text ('1,0,0.5')", "recordIO-protobuf", ..."""
    kind = kind_of(head)
    if kind == "text":
        first = head.decode("utf-8", "replace").splitlines()[0] if head.strip() else ""
        shown = repr(first[:40])
        if "::" in first:
            return f"'::'-separated text ({shown})"
        if "\t" in first:
            return f"tab-separated text ({shown})"
        if "," in first:
            return f"CSV text ({shown})"
        return f"text ({shown})"
    return {
        "empty": "an empty file",
        "recordio": "recordIO-protobuf (it starts with the recordIO magic number)",
        "gzip": "gzip-compressed data",
        "zip": "a zip archive (.npz)",
        "npy": "a NumPy .npy array",
        "png": "a PNG image",
        "jpeg": "a JPEG image",
        "idx": "an IDX array (the MNIST format)",
        "binary": f"binary data (first bytes {head[:8].hex(' ')})",
    }[kind]


def declared_kind(content_type: str | None) -> str | None:
    """The kind of bytes a ContentType promises (kind_of's names); None for an absent or unknown type."""
    if not content_type:
        return None
    media = content_type.split(";")[0].strip().lower()
    if media.startswith("image/") and media not in _DECLARED:
        return "image"
    return _DECLARED.get(media)


def check_file_kind(
    channel: str, content_type: str | None, name: str, head: bytes, accepted: Collection[str], reads: str
) -> str:
    """The kind of a file's bytes, once it agrees with the declared ContentType and is one the family reads.

    `reads` completes the message: what the family reads and how to fix it. An empty file passes (the
    caller decides whether emptiness is an error)."""
    kind = kind_of(head)
    if kind == "empty":
        return kind
    declared = declared_kind(content_type)
    matches = declared is None or declared == kind or (declared == "image" and kind in ("png", "jpeg"))
    if not matches:
        raise DataError(
            f"Channel '{channel}' is declared {content_type} but {name} looks like {describe(head)}; {reads}"
        )
    if kind not in accepted:
        declared_text = f" (declared {content_type})" if content_type else ""
        raise DataError(f"Channel '{channel}': {name}{declared_text} looks like {describe(head)}; {reads}")
    return kind


class PeekedStream:
    """A binary stream whose first bytes were read to sniff it (a FIFO cannot seek back), counting the
    bytes handed out since (so a reader can name the byte offset of what it parses)."""

    def __init__(self, stream: IO[bytes], head_size: int = HEAD_BYTES):
        self._stream = stream
        self.head = _read_up_to(stream, head_size)
        self._pending = self.head
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        if self._pending:
            if size < 0 or size >= len(self._pending):
                data, self._pending = self._pending, b""
                rest = self._stream.read(-1 if size < 0 else size - len(data))
                data += rest or b""
            else:
                data, self._pending = self._pending[:size], self._pending[size:]
        else:
            data = self._stream.read(size)
        self.position += len(data)
        return data


def _read_up_to(stream: IO[bytes], size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------- gzip


def gunzip(raw: bytes, where: str, incomplete: Callable[[bytes], str] | None = None) -> bytes:
    """A whole gzip file (several members too) decompressed. A truncated or corrupt one raises DataError
    naming `where`, how many compressed bytes were read and how many bytes came out, plus
    `incomplete(what came out)`: the family's name for the first record that is cut off."""
    out: list[bytes] = []
    position = 0
    while position < len(raw):
        if raw[position:].strip(b"\0") == b"":  # zero padding after the last member, as gzip(1) accepts
            break
        if raw[position : position + 2] != b"\x1f\x8b":
            raise DataError(
                f"{where}: {len(raw) - position} bytes of non-gzip data follow the gzip stream at byte {position}"
            )
        member = zlib.decompressobj(wbits=31)
        read = position
        while read < len(raw) and not member.eof:
            piece = raw[read : read + _GZIP_CHUNK]
            before = member.copy()
            try:
                out.append(member.decompress(piece))
            except zlib.error as err:  # replay the piece in small steps: keep what precedes the bad bytes
                read = _replay(before, piece, read, out)
                raise DataError(
                    f"{where} is a corrupt gzip file ({err}) at compressed bytes {read}..{read + _REPLAY_STEP} of "
                    f"{len(raw)}, after {sum(map(len, out))} decompressed bytes{_where_cut(incomplete, out)}"
                ) from None
            read += len(piece)
        if not member.eof:
            out.append(member.flush())
            raise DataError(
                f"{where} is a truncated gzip file: its {len(raw)} bytes decompress to "
                f"{sum(map(len, out))} bytes and the stream ends early{_where_cut(incomplete, out)}"
            )
        position = len(raw) - len(member.unused_data)
    return b"".join(out)


def _replay(member: Any, piece: bytes, start: int, out: list[bytes]) -> int:
    """Decompress `piece` again in small steps until it fails; returns the offset of the failing step."""
    for offset in range(0, len(piece), _REPLAY_STEP):
        try:
            out.append(member.decompress(piece[offset : offset + _REPLAY_STEP]))
        except zlib.error:
            return start + offset
    return start + len(piece)


def _where_cut(incomplete: Callable[[bytes], str] | None, out: list[bytes]) -> str:
    return f"; {incomplete(b''.join(out))}" if incomplete is not None else ""


# ---------------------------------------------------------------------------------------------- text


def decode_utf8(data: bytes, where: str, first_line: int = 1) -> str:
    """UTF-8 text; bytes that are not name their line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data.count(b"\n", 0, err.start)
        raise DataError(f"{where} line {line}: byte 0x{data[err.start]:02x} is not UTF-8 text") from None


def numeric_table(
    text: str, where: str, *, delimiter: str = ",", first_line: int = 1, columns: int | None = None, why: str = ""
) -> np.ndarray:
    """A float64 table of delimited numbers; blank lines are skipped. The first bad line raises DataError
    naming `where` and its 1-based line number (counted from `first_line`): a row whose width differs from
    the first row's (or from `columns`, explained by `why`), or a cell that is not a finite number."""
    if not text.strip():
        return np.zeros((0, columns or 0))
    # numpy's C reader (fast) takes one-character delimiters: '::' (ratings.dat) is read as ','.
    fast_text, fast_delimiter = (text.replace(delimiter, ","), ",") if len(delimiter) > 1 else (text, delimiter)
    try:
        table = np.loadtxt(io.StringIO(fast_text), delimiter=fast_delimiter, dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        table = None  # numpy's message counts rows its own way: find the line ourselves
    if (
        table is not None
        and np.isfinite(table).all()
        and (columns is None or table.shape[1] == columns or table.shape[0] == 0)
    ):
        return table
    return _scan(text, where, delimiter, first_line, columns, why)


def _scan(text: str, where: str, delimiter: str, first_line: int, columns: int | None, why: str) -> np.ndarray:
    rows: list[list[float]] = []
    width, width_line = columns, None
    for number, line in enumerate(text.split("\n"), start=first_line):
        if not line.strip():
            continue
        cells = line.split(delimiter)
        if width is None:
            width, width_line = len(cells), number
        if len(cells) != width:
            expected = f"line {width_line} has {width}" if width_line is not None else f"expected {width}{why}"
            raise DataError(f"{where} line {number} has {len(cells)} columns; {expected} ({_show(line)})")
        row = []
        for column, cell in enumerate(cells, start=1):
            try:
                value = float(cell)
            except ValueError:
                raise DataError(
                    f"{where} line {number}, column {column}: {cell.strip()[:40]!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise DataError(f"{where} line {number}, column {column}: {cell.strip()!r} is not a finite number")
            row.append(value)
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(len(rows), width or 0)


def _show(line: str) -> str:
    return repr(line[:60] + ("..." if len(line) > 60 else ""))


def text_blocks(stream: IO[bytes], block_bytes: int = 4 << 20) -> Iterator[tuple[int, bytes]]:
    """A text stream in blocks of whole lines: (1-based number of the block's first line, bytes)."""
    line, carry = 1, b""
    while True:
        chunk = stream.read(block_bytes)
        if not chunk:
            if carry:
                yield line, carry
            return
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data
            continue
        block, carry = data[:cut], data[cut:]
        yield line, block
        line += block.count(b"\n")


# ---------------------------------------------------------------------------------------------- binary formats


def recordio_problem(where: str, problem: str, offset: int | None = None) -> str:
    """The recordIO codec's error, said for a channel's file: "...: data.rec is truncated: record 3 at byte
    1212 declares 400 bytes, 100 remain". `offset`: the byte offset of the record a parse error is about."""
    for prefix in ("Truncated recordIO data: ", "Truncated recordIO: "):
        if problem.startswith(prefix):
            return f"{where} is truncated: {problem[len(prefix) :]}"
    if problem.startswith("Record ") and "is not a valid" in problem:  # a payload that is not a Record message
        number, _, rest = problem[len("Record ") :].partition(" ")
        at = f" at byte {offset}" if offset is not None else ""
        return f"{where} record {number}{at} {rest}"
    return f"{where} is not valid recordIO-protobuf: {problem}"


def npy_problem(path: Path, row: str = "row") -> str | None:
    """What keeps a .npy file from loading whole, naming the first incomplete `row` of a truncated one
    ("is truncated: its header declares shape (60000, 28, 28) uint8, 47040000 bytes, but 1000 follow; image 1
    of 60000 is the first incomplete one"); None when its size matches its header."""
    with open(path, "rb") as file:
        try:
            shape, _, dtype = npy_codec.read_header(file)
        except (ValueError, EOFError, OSError) as err:
            return f"is not a NumPy .npy file ({err})"
        start = file.tell()
    if dtype.hasobject:
        return "holds Python objects (object arrays are refused: they would be unpickled)"
    present = path.stat().st_size - start
    row_bytes = dtype.itemsize * math.prod(shape[1:])
    needed = row_bytes * (shape[0] if shape else 1)
    if present >= needed:
        return None
    shown = f"shape {tuple(shape)} {dtype}, {needed} bytes"
    if not shape or not row_bytes:
        return f"is truncated: its header declares {shown}, but {present} follow"
    return (
        f"is truncated: its header declares {shown}, but {present} follow; {row} {present // row_bytes} of "
        f"{shape[0]} is the first incomplete one"
    )
