"""Training data: recordIO-protobuf (dense or sparse) or CSV, File or Pipe mode, held as CSR in memory.

Every input, dense or sparse, becomes one CSR matrix: FM's cost is O(k * nnz), so zeros are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from byoc_runtime.codecs import csv_codec, media_type, recordio_protobuf
from byoc_runtime.errors import DataError
from byoc_runtime.training_env import Channel

RECORDIO = "application/x-recordio-protobuf"
CSV = "text/csv"


@dataclass(frozen=True)
class CsrData:
    """Rows of features in CSR form (row i: indices/values[indptr[i]:indptr[i + 1]]) and one label per row."""

    indptr: np.ndarray  # int64, len rows + 1
    indices: np.ndarray  # int64
    values: np.ndarray  # float32
    labels: np.ndarray | None  # float32, len rows
    num_cols: int

    def __len__(self) -> int:
        return self.indptr.size - 1

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    @classmethod
    def from_dense(cls, features: np.ndarray, labels: np.ndarray | None = None) -> CsrData:
        features = np.asarray(features, dtype=np.float32)
        rows, cols = np.nonzero(features)
        indptr = np.zeros(features.shape[0] + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=features.shape[0]), out=indptr[1:])
        return cls(indptr, cols.astype(np.int64), features[rows, cols], _labels(labels), features.shape[1])

    @classmethod
    def concat(cls, parts: list[CsrData]) -> CsrData:
        if len(parts) == 1:
            return parts[0]
        offsets = np.cumsum([0] + [p.nnz for p in parts[:-1]])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + off for p, off in zip(parts, offsets, strict=True)])
        labels = None if any(p.labels is None for p in parts) else np.concatenate([p.labels for p in parts])
        return cls(
            indptr.astype(np.int64),
            np.concatenate([p.indices for p in parts]),
            np.concatenate([p.values for p in parts]),
            labels,
            parts[0].num_cols,
        )

    def take(self, rows: np.ndarray) -> CsrData:
        """The rows `rows`, in that order (shuffling, sharding, batching)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, lengths = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.zeros(rows.size + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # Position of every kept entry in the source arrays: its row's start plus its offset within the row.
        positions = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        labels = None if self.labels is None else self.labels[rows]
        return CsrData(indptr, self.indices[positions], self.values[positions], labels, self.num_cols)

    def dense(self) -> np.ndarray:
        out = np.zeros((len(self), self.num_cols), np.float32)
        row_of = np.repeat(np.arange(len(self)), np.diff(self.indptr))
        np.add.at(out, (row_of, self.indices), self.values)
        return out


def _labels(labels: np.ndarray | None) -> np.ndarray | None:
    return None if labels is None else np.asarray(labels, dtype=np.float32).ravel()


def from_decoded(decoded: recordio_protobuf.DecodedRecords) -> CsrData:
    labels = decoded.labels
    if labels is not None and labels.ndim != 1:
        raise ValueError(f"each record needs one scalar label, got labels of shape {labels.shape}")
    if decoded.is_sparse:
        csr = decoded.sparse
        return CsrData(
            csr.indptr.astype(np.int64),
            csr.indices.astype(np.int64),
            csr.values.astype(np.float32),
            _labels(labels),
            int(csr.num_cols),
        )
    return CsrData.from_dense(decoded.features, labels)


def _files(channel: Channel) -> list[Path]:
    files = sorted(p for p in channel.path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"Channel '{channel.name}' has no files in {channel.path}")
    return files


def _streams(channel: Channel) -> Iterator[tuple[str, IO[bytes]]]:
    """Open binary streams of the channel: its files (File mode) or the FIFO of epoch 0 (Pipe mode)."""
    sources: Iterable[Path] = [channel.pipe_path(0)] if channel.is_pipe else _files(channel)
    for source in sources:
        with open(source, "rb") as stream:
            yield source.name, stream


def _read_recordio(stream: IO[bytes]) -> CsrData:
    return from_decoded(recordio_protobuf.decode(stream, densify=False))


def _read_csv(stream: IO[bytes]) -> CsrData:
    table = csv_codec.decode(stream.read()).astype(np.float32)
    if table.shape[1] < 2:
        raise ValueError("CSV rows need the label first and at least one feature")
    return CsrData.from_dense(table[:, 1:], table[:, 0])


def read_channel(channel: Channel, feature_dim: int, predictor_type: str) -> CsrData:
    """The whole channel as CSR, checked against feature_dim and the predictor's label domain.

    Pipe mode reads the stream of epoch 0 once; later epochs reuse it from memory.
    """
    kind = media_type(channel.content_type) or RECORDIO  # the built-in's default content type
    if kind not in (RECORDIO, CSV):
        raise DataError(f"Channel '{channel.name}' has content type {channel.content_type!r}; use {RECORDIO} or {CSV}")
    reader = _read_recordio if kind == RECORDIO else _read_csv
    parts = []
    for name, stream in _streams(channel):
        try:
            part = reader(stream)
        except (ValueError, UnicodeDecodeError) as err:
            raise DataError(f"Channel '{channel.name}': {name} is not valid {kind} data: {err}") from None
        if len(part) == 0:
            continue
        if part.num_cols != feature_dim:
            raise DataError(
                f"Channel '{channel.name}': {name} has {part.num_cols} features per record but the "
                f"hyperparameter feature_dim is {feature_dim}"
            )
        if part.labels is None:
            raise DataError(f"Channel '{channel.name}': {name} has records without labels; training needs them")
        parts.append(part)
    if not parts:
        raise DataError(f"Channel '{channel.name}' holds no records")
    data = CsrData.concat(parts)
    check_labels(data.labels, predictor_type, channel.name)
    return data


def check_labels(labels: np.ndarray, predictor_type: str, channel: str) -> None:
    if not np.all(np.isfinite(labels)):
        raise DataError(f"Channel '{channel}' has labels that are NaN or infinite")
    if predictor_type == "binary_classifier" and not np.all((labels == 0) | (labels == 1)):
        bad = labels[(labels != 0) & (labels != 1)][:5].tolist()
        raise DataError(f"Channel '{channel}': binary_classifier labels must be 0 or 1, found {bad}")
