"""numpy / scipy / pandas -> recordIO-protobuf files, dense or sparse, one file or many shards.

The bytes are those of the SageMaker SDK's `write_numpy_to_dense_tensor` and `write_spmatrix_to_sparse_tensor`
(the runtime's codec makes the same protobuf calls), without needing the SDK or scipy installed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime.codecs import recordio_protobuf
from byoc_runtime.codecs.recordio_protobuf import CsrMatrix

CONTENT_TYPE = recordio_protobuf.CONTENT_TYPE


def is_sparse(features: Any) -> bool:
    """scipy sparse matrices, our CsrMatrix and pandas frames of sparse columns count as sparse."""
    if isinstance(features, CsrMatrix) or hasattr(features, "tocsr"):
        return True
    sparse_accessor = getattr(features, "sparse", None)
    return sparse_accessor is not None and hasattr(features, "columns")


def as_dense(features: Any) -> np.ndarray:
    """A 2-D numpy matrix from an array, a list of rows or a pandas DataFrame (its dtype kept)."""
    array = features.to_numpy() if hasattr(features, "to_numpy") else np.asarray(features)
    if array.ndim != 2:
        raise ValueError(f"features must be a 2-D matrix, got shape {array.shape}")
    return array


def as_csr(features: Any) -> CsrMatrix:
    """CsrMatrix from a scipy sparse matrix, a CsrMatrix or a pandas DataFrame of sparse columns."""
    if isinstance(features, CsrMatrix):
        return features
    if hasattr(features, "columns") and hasattr(features, "sparse"):
        features = features.sparse.to_coo()
    csr = features.tocsr()
    return CsrMatrix(csr.indptr, csr.indices, csr.data, csr.shape[1])


def as_labels(labels: Any) -> np.ndarray | None:
    if labels is None:
        return None
    array = labels.to_numpy() if hasattr(labels, "to_numpy") else np.asarray(labels)
    return array.ravel() if array.ndim == 2 and 1 in array.shape else array


def num_rows(features: Any) -> int:
    if isinstance(features, CsrMatrix):
        return features.indptr.size - 1
    return int(features.shape[0])


def to_recordio(features: Any, labels: Any = None) -> bytes:
    """One record per row; dense input gives dense tensors, sparse input keys/values/shape tensors."""
    if is_sparse(features):
        return recordio_protobuf.write_sparse(as_csr(features), as_labels(labels))
    return recordio_protobuf.write_dense(as_dense(features), as_labels(labels))


def _rows(features: Any, start: int, stop: int) -> Any:
    if is_sparse(features):
        csr = as_csr(features)
        lo, hi = csr.indptr[start], csr.indptr[stop]
        return CsrMatrix(csr.indptr[start : stop + 1] - lo, csr.indices[lo:hi], csr.values[lo:hi], csr.num_cols)
    return as_dense(features)[start:stop]


def write_recordio(path: str | Path, features: Any, labels: Any = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_recordio(features, labels))
    return path


def write_shards(
    directory: str | Path,
    features: Any,
    labels: Any = None,
    *,
    rows_per_shard: int | None = None,
    num_shards: int | None = None,
    prefix: str = "part",
) -> list[Path]:
    """Split the rows into files `<prefix>-00000.rec`... (for big data, Pipe mode and ShardedByS3Key)."""
    total = num_rows(features)
    if rows_per_shard is None:
        rows_per_shard = math.ceil(total / max(num_shards or 1, 1)) or 1
    if rows_per_shard < 1:
        raise ValueError("rows_per_shard must be at least 1")
    labels = as_labels(labels)
    if labels is not None and labels.shape[0] != total:
        raise ValueError(f"{labels.shape[0]} labels for {total} rows")
    directory = Path(directory)
    paths = []
    for number, start in enumerate(range(0, total, rows_per_shard)):
        stop = min(start + rows_per_shard, total)
        shard_labels = None if labels is None else labels[start:stop]
        paths.append(
            write_recordio(directory / f"{prefix}-{number:05d}.rec", _rows(features, start, stop), shard_labels)
        )
    return paths


def read_recordio(path: str | Path) -> recordio_protobuf.DecodedRecords:
    """Decode a recordIO-protobuf file back to arrays (sparse files keep their CSR form)."""
    with open(path, "rb") as stream:
        return recordio_protobuf.decode(stream, densify=False)
