"""Rows of features in CSR form: what a training mini-batch, a test chunk and a request become.

Every input, dense or sparse, becomes CSR: FM's cost is O(k * nnz), so zeros are dropped. Reading a
training channel (streamed, in mini-batches) is channel.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from byoc_runtime.codecs import recordio_protobuf


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

    def rows(self, start: int, stop: int) -> CsrData:
        """Rows start..stop-1 without copying the non-zeros (views of this matrix's arrays)."""
        stop = min(stop, len(self))
        first, last = int(self.indptr[start]), int(self.indptr[stop])
        labels = None if self.labels is None else self.labels[start:stop]
        return CsrData(
            self.indptr[start : stop + 1] - first,
            self.indices[first:last],
            self.values[first:last],
            labels,
            self.num_cols,
        )

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
