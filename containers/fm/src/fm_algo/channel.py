"""A training or test channel, streamed: recordIO-protobuf (dense or sparse) or CSV, File or Pipe mode.

Each pass reads the channel once, as the built-in algorithm does: every file in File mode, the pass's own FIFO
`<channel>_<n>` in Pipe mode (SageMaker feeds one per epoch). Records are decoded one at a time and gathered
into CSR chunks, which `batches` shuffles within a window of a few mini-batches: memory stays bounded whatever
the size of the channel. Every record is checked on the way (feature width against feature_dim, one finite
label, 0/1 for a binary classifier, finite values); a bad one fails the job with a message naming the channel,
the file, and the record (0-based, with its byte offset) or the line (1-based).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime.codecs import media_type, recordio_protobuf
from byoc_runtime.errors import DataError
from byoc_runtime.training_data import (
    PeekedStream,
    channel_files,
    check_file_kind,
    decode_utf8,
    numeric_table,
    recordio_problem,
    relative_name,
    text_blocks,
)
from byoc_runtime.training_env import Channel

from .data import CsrData

log = logging.getLogger("fm_algo")
RECORDIO = "application/x-recordio-protobuf"
CSV = "text/csv"
READS = (
    f"fm reads {RECORDIO} (the default when a channel declares no ContentType) or {CSV} (label first): "
    "declare the ContentType that matches the files"
)
CHUNK_ROWS = 4096  # records decoded into one CSR chunk
CHUNK_NNZ = 4_000_000  # ... unless they hold more values than this (about 48 MB of CSR)
SHUFFLE_BATCHES = 8  # training: records are shuffled within chunks of this many mini-batches
PIPE_WAIT_SECONDS = 300.0  # how long a Pipe-mode pass waits for its FIFO to appear
_TENSORS = ("float32_tensor", "float64_tensor", "int32_tensor")
_FLOAT_SIZES = {"float32_tensor": 4, "float64_tensor": 8}


@dataclass
class PassStats:
    records: int = 0  # read from the channel
    local: int = 0  # kept by this host (its share)
    nnz: int = 0  # non-zeros of the kept records


class ChannelData:
    """One channel of the job, read pass by pass. `share` = (host rank, hosts): a FullyReplicated channel of a
    multi-host job is split by record number (record i goes to host i % hosts); (0, 1) keeps everything."""

    def __init__(
        self, channel: Channel, feature_dim: int, predictor_type: str, share: tuple[int, int] = (0, 1)
    ) -> None:
        kind = media_type(channel.content_type) or RECORDIO  # the built-in's default content type
        if kind not in (RECORDIO, CSV):
            raise DataError(
                f"Channel '{channel.name}' has content type {channel.content_type!r}; use {RECORDIO} or {CSV}"
            )
        self.channel, self.kind = channel, kind
        self.feature_dim, self.classifier = feature_dim, predictor_type == "binary_classifier"
        self.rank, self.hosts = share
        self.last = PassStats()

    # ------------------------------------------------------------------ sources
    def check_files(self) -> None:
        """File mode: every file's first bytes against the declared ContentType, before any training starts."""
        if self.channel.is_pipe:
            return
        for path in channel_files(self.channel):
            with open(path, "rb") as file:
                self._check_kind(relative_name(self.channel, path), PeekedStream(file).head)

    def _check_kind(self, name: str, head: bytes) -> None:
        accepted = ("recordio",) if self.kind == RECORDIO else ("text",)
        check_file_kind(self.channel.name, self.channel.content_type, name, head, accepted, READS)

    def _sources(self, pass_number: int) -> Iterator[tuple[str, PeekedStream]]:
        if self.channel.is_pipe:
            fifo = self.channel.pipe_path(pass_number)
            _wait_for(fifo, self.channel.name)
            paths = [fifo]
        else:
            paths = channel_files(self.channel)
        for path in paths:
            with open(path, "rb", buffering=1 << 20) as file:
                stream = PeekedStream(file)
                name = relative_name(self.channel, path)
                self._check_kind(name, stream.head)
                yield name, stream

    def _where(self, name: str) -> str:
        return f"Channel '{self.channel.name}': {name}"

    # ------------------------------------------------------------------ reading
    def chunks(
        self, pass_number: int = 0, rows: int = CHUNK_ROWS, rng: np.random.Generator | None = None
    ) -> Iterator[CsrData]:
        """This host's records of one pass as CSR chunks of up to `rows` records (or CHUNK_NNZ values), in
        file order or, given `rng`, shuffled within each chunk. At the end of the pass `self.last` holds its
        counts; a pass without any record is an error."""
        stats = PassStats()
        self.last = stats
        for name, stream in self._sources(pass_number):
            read = self._recordio if self.kind == RECORDIO else self._csv
            for chunk in read(name, stream, stats, rows, rng):
                stats.local += len(chunk)
                stats.nnz += chunk.nnz
                yield chunk
        if stats.records == 0:
            what = (
                f"its FIFO {self.channel.pipe_path(pass_number).name} holds"
                if self.channel.is_pipe
                else "its files hold"
            )
            raise DataError(f"Channel '{self.channel.name}' is empty: {what} no records")

    def _mine(self, number: int) -> bool:
        return self.hosts == 1 or number % self.hosts == self.rank

    def _recordio(
        self, name: str, stream: PeekedStream, stats: PassStats, rows: int, rng: np.random.Generator | None
    ) -> Iterator[CsrData]:
        where = self._where(name)
        builder = _ChunkBuilder(self.feature_dim, where, rng)
        index, offset = -1, 0
        records = recordio_protobuf.read_records(stream)
        while True:
            try:
                record = next(records, None)
            except ValueError as err:
                raise DataError(recordio_problem(where, str(err), offset)) from None
            if record is None:
                break
            index += 1
            start, offset = offset, stream.position
            mine = self._mine(stats.records)
            stats.records += 1
            keys, values, label = self._record_row(record, where, index, start, mine)
            if mine:
                builder.add(keys, values, label, index, start)
                if len(builder) >= rows or builder.nnz >= CHUNK_NNZ:
                    yield builder.build()
        if len(builder):
            yield builder.build()

    def _record_row(
        self, record: Any, where: str, index: int, start: int, mine: bool
    ) -> tuple[np.ndarray | None, np.ndarray | None, float]:
        """(keys or None for a dense row, values or None when not this host's, label) of one record, checked."""
        if "values" not in record.features:
            raise DataError(f"{_at(where, index, start)} has no 'values' feature tensor")
        tensor, kind = _tensor(record.features["values"], where, index, start, "feature 'values'")
        values, keys, shape = tensor.values, tensor.keys, tensor.shape
        sparse = recordio_protobuf.is_sparse_row(tensor)
        if sparse:
            if len(shape) != 1 or len(keys) != len(values):
                raise DataError(
                    f"{_at(where, index, start)} is a sparse record without shape=[num_cols] and one key per value"
                )
            width = int(shape[0])
        else:
            width = len(values)
        if width != self.feature_dim:
            raise DataError(
                f"{_at(where, index, start)} has {width} features but the hyperparameter feature_dim is "
                f"{self.feature_dim}"
            )
        if "values" not in record.label:
            raise DataError(f"{_at(where, index, start)} has no label; training needs one per record")
        label_values = _tensor(record.label["values"], where, index, start, "label")[0].values
        if len(label_values) != 1:
            raise DataError(
                f"{_at(where, index, start)} has a label of {len(label_values)} values; each record needs one "
                "scalar label"
            )
        label = float(label_values[0])
        if not math.isfinite(label) or (self.classifier and label not in (0.0, 1.0)):
            self._check_label(label, _at(where, index, start))
        if not mine:
            return None, None, label
        array = _values(tensor, kind, len(values))
        if not sparse:
            return None, array, label
        key_array = np.fromiter(keys, np.int64, len(keys))
        if key_array.size and (key_array.min() < 0 or key_array.max() >= width):
            bad = int(key_array[(key_array < 0) | (key_array >= width)][0])
            raise DataError(f"{_at(where, index, start)} has the key {bad}, outside [0, {width})")
        return key_array, array, label

    def _check_label(self, label: float, where: str) -> None:
        if not math.isfinite(label):
            raise DataError(f"{where} has the label {label}; labels must be finite numbers")
        if self.classifier and label not in (0.0, 1.0):
            raise DataError(f"{where} has the label {label:g}; binary_classifier labels must be 0 or 1")

    def _csv(
        self, name: str, stream: PeekedStream, stats: PassStats, rows: int, rng: np.random.Generator | None
    ) -> Iterator[CsrData]:
        where = self._where(name)
        rows = max(1, min(rows, CHUNK_NNZ // (self.feature_dim + 1)))
        for first_line, block in text_blocks(stream):
            text = decode_utf8(block, where, first_line)
            why = f": the label, then feature_dim={self.feature_dim} features"
            table = numeric_table(text, where, first_line=first_line, columns=self.feature_dim + 1, why=why)
            if not len(table):
                continue
            numbers = stats.records + np.arange(len(table))
            stats.records += len(table)
            bad = self._bad_labels(table[:, 0])
            if bad.size:
                self._check_label(float(table[bad[0], 0]), f"{where} line {_row_lines(text, first_line)[bad[0]]}")
            if self.hosts > 1:
                table = table[numbers % self.hosts == self.rank]
            for start in range(0, len(table), rows):
                part = table[start : start + rows]
                if rng is not None:
                    part = part[rng.permutation(len(part))]
                yield CsrData.from_dense(part[:, 1:], part[:, 0])

    def _bad_labels(self, labels: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(labels)
        if self.classifier:
            bad |= (labels != 0) & (labels != 1)
        return np.flatnonzero(bad)

    # ------------------------------------------------------------------ mini-batches
    def batches(self, pass_number: int, batch_size: int, seed: int) -> Iterator[CsrData]:
        """This host's records of one pass in mini-batches of batch_size (the last one may be smaller),
        shuffled within chunks of SHUFFLE_BATCHES mini-batches (or CHUNK_NNZ values)."""
        rng = np.random.default_rng(seed)
        carry: list[CsrData] = []  # the start of a batch that straddles two chunks
        carried = 0
        for chunk in self.chunks(pass_number, batch_size * SHUFFLE_BATCHES, rng):
            start = 0
            if carried:
                start = min(batch_size - carried, len(chunk))
                carry.append(chunk.rows(0, start))
                carried += start
                if carried < batch_size:
                    continue
                yield CsrData.concat(carry)
                carry, carried = [], 0
            while len(chunk) - start >= batch_size:
                yield chunk.rows(start, start + batch_size)
                start += batch_size
            if start < len(chunk):
                carry, carried = [chunk.rows(start, len(chunk))], len(chunk) - start
        if carried:
            yield CsrData.concat(carry)


class _ChunkBuilder:
    """Records (dense or sparse rows) gathered into one CSR chunk; non-finite values name their record."""

    def __init__(self, num_cols: int, where: str, rng: np.random.Generator | None = None):
        self.num_cols, self.where, self.rng = num_cols, where, rng
        self._reset()

    def _reset(self) -> None:
        self.nnz = 0
        self.keys: list[np.ndarray | None] = []
        self.values: list[np.ndarray] = []
        self.labels: list[float] = []
        self.positions: list[tuple[int, int]] = []  # (record index, byte offset) of each row

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, keys: np.ndarray | None, values: np.ndarray, label: float, index: int, start: int) -> None:
        self.keys.append(keys)
        self.values.append(values)
        self.nnz += values.size
        self.labels.append(label)
        self.positions.append((index, start))

    def build(self) -> CsrData:
        if self.rng is not None:  # shuffle the records of the chunk (lists of references: cheap)
            order = self.rng.permutation(len(self)).tolist()
            self.keys, self.values = [self.keys[i] for i in order], [self.values[i] for i in order]
            self.labels, self.positions = [self.labels[i] for i in order], [self.positions[i] for i in order]
        labels = np.array(self.labels, np.float32)
        if all(keys is None for keys in self.keys):
            dense = np.stack(self.values)
            finite = np.isfinite(dense).all(axis=1)
            if not finite.all():
                self._fail(int(np.flatnonzero(~finite)[0]))
            chunk = CsrData.from_dense(dense, labels)
        else:
            rows = [(k, v) if k is not None else _nonzero(v) for k, v in zip(self.keys, self.values, strict=True)]
            indptr = np.zeros(len(rows) + 1, np.int64)
            np.cumsum([keys.size for keys, _ in rows], out=indptr[1:])
            values = np.concatenate([values for _, values in rows])
            finite = np.isfinite(values)
            if not finite.all():
                self._fail(int(np.searchsorted(indptr, np.flatnonzero(~finite)[0], side="right")) - 1)
            chunk = CsrData(indptr, np.concatenate([keys for keys, _ in rows]), values, labels, self.num_cols)
        self._reset()
        return chunk

    def _fail(self, row: int) -> None:
        raise DataError(f"{_at(self.where, *self.positions[row])} has feature values that are NaN or infinite")


def _nonzero(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keys = np.flatnonzero(values)
    return keys.astype(np.int64), values[keys]


def _at(where: str, index: int, start: int) -> str:
    return f"{where} record {index} at byte {start}"


def _tensor(value: Any, where: str, index: int, start: int, what: str) -> tuple[Any, str]:
    kind = value.WhichOneof("value")
    if kind not in _TENSORS:
        raise DataError(f"{_at(where, index, start)}: its {what} holds {kind or 'no value'}, not a numeric tensor")
    return getattr(value, kind), kind


def _values(tensor: Any, kind: str, count: int) -> np.ndarray:
    """A tensor's values as float32. Float tensors are re-serialized (a copy in C) and their packed field 1,
    the values in little-endian, read in place: 15x faster than iterating the repeated field."""
    itemsize = _FLOAT_SIZES.get(kind)
    if itemsize is not None and count:
        blob = tensor.SerializeToString()
        if blob[:1] == b"\x0a":  # field 1, length-delimited: the packed values come first
            length, position = _varint(blob, 1)
            if length == count * itemsize:
                return np.frombuffer(blob, f"<f{itemsize}", count, position).astype(np.float32)
    return np.fromiter(tensor.values, np.float32, count)


def _varint(blob: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = blob[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _row_lines(text: str, first_line: int) -> list[int]:
    """The 1-based line number of every non-blank line of a block (the rows of its table)."""
    return [first_line + n for n, line in enumerate(text.split("\n")) if line.strip()]


def _wait_for(fifo: Path, channel: str) -> None:
    """SageMaker creates the FIFO of the next pass once the previous one is consumed: wait for it."""
    deadline = time.monotonic() + PIPE_WAIT_SECONDS
    while not os.path.exists(fifo):
        if time.monotonic() > deadline:
            raise DataError(
                f"Pipe-mode channel '{channel}': its FIFO {fifo.name} did not appear within {PIPE_WAIT_SECONDS:.0f} s"
            )
        time.sleep(0.02)
