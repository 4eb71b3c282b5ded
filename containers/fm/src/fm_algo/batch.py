"""A mini-batch compacted to the U feature columns it touches, with the two products FM training needs:
X @ A (forward) and X^T @ G (backward), both in the compact column space.

Two layouts with the same interface: dense (a B x U matrix, BLAS matmuls; best when the batch is dense
enough, like MNIST pixels) and sparse (CSR segment sums, O(k * nnz); best for one-hot data with 10^5+
features). `compact()` picks by density, so no batch is ever widened to feature_dim.
"""

from __future__ import annotations

import numpy as np

from .data import CsrData

# Above this share of non-zeros among B x U cells, a dense compact matrix + BLAS beats segment sums.
DENSE_SHARE = 0.05


def segment_sum(values: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Sums of consecutive runs of `values` (n[, k]) delimited by indptr; empty runs sum to 0."""
    out = np.zeros((indptr.size - 1,) + values.shape[1:], dtype=values.dtype)
    nonempty = indptr[:-1] < indptr[1:]
    if values.shape[0]:
        out[nonempty] = np.add.reduceat(values, indptr[:-1][nonempty], axis=0)
    return out


class SparseBatch:
    def __init__(self, batch: CsrData, local: np.ndarray, num_cols: int):
        self.size, self.num_cols = len(batch), num_cols
        self.indptr, self.values = batch.indptr, batch.values.astype(np.float32)
        self.local = local
        self.row_of = np.repeat(np.arange(self.size), np.diff(self.indptr))
        # Grouping of the non-zeros by column, for X^T @ G (every compact column occurs at least once).
        self.by_col = np.argsort(local, kind="stable")
        self.col_starts = np.r_[0, np.cumsum(np.bincount(local, minlength=num_cols))[:-1]]

    def matmul(self, a: np.ndarray, squared: bool = False) -> np.ndarray:
        """X @ a (or X^2 @ a) for a of shape (U,) or (U, k)."""
        vals = self.values * self.values if squared else self.values
        scaled = a[self.local] * (vals if a.ndim == 1 else vals[:, None])
        return segment_sum(scaled, self.indptr)

    def t_matmul(self, g: np.ndarray, squared: bool = False) -> np.ndarray:
        """X^T @ g (or (X^2)^T @ g) for g of shape (B,) or (B, k)."""
        vals = self.values * self.values if squared else self.values
        contrib = g[self.row_of] * (vals if g.ndim == 1 else vals[:, None])
        if not contrib.shape[0]:
            return np.zeros((self.num_cols,) + g.shape[1:], g.dtype)
        return np.add.reduceat(contrib[self.by_col], self.col_starts, axis=0)


class DenseBatch:
    def __init__(self, batch: CsrData, local: np.ndarray, num_cols: int):
        self.size, self.num_cols = len(batch), num_cols
        # A record may repeat a key: its values add up, as they would in the sparse products (bincount sums
        # them, an order of magnitude faster than np.add.at).
        cells = np.repeat(np.arange(self.size) * num_cols, np.diff(batch.indptr)) + local
        summed = np.bincount(cells, weights=batch.values, minlength=self.size * num_cols)
        self.x = summed.astype(np.float32).reshape(self.size, num_cols)
        self.x2 = self.x * self.x

    def matmul(self, a: np.ndarray, squared: bool = False) -> np.ndarray:
        return (self.x2 if squared else self.x) @ a

    def t_matmul(self, g: np.ndarray, squared: bool = False) -> np.ndarray:
        return (self.x2 if squared else self.x).T @ g


def compact(batch: CsrData, layout: str = "auto") -> tuple[np.ndarray, SparseBatch | DenseBatch]:
    """(feature ids the batch touches, the batch in that compact column space)."""
    if batch.num_cols <= 4 * batch.nnz:  # a presence table over the features beats sorting the keys
        present = np.zeros(batch.num_cols, bool)
        present[batch.indices] = True
        rows = np.flatnonzero(present)
        local = (np.cumsum(present) - 1)[batch.indices]
    else:
        rows, local = np.unique(batch.indices, return_inverse=True)
        local = local.reshape(-1).astype(np.int64)
    if layout == "auto":
        cells = max(len(batch) * rows.size, 1)
        layout = "dense" if batch.nnz / cells >= DENSE_SHARE else "sparse"
    kind = DenseBatch if layout == "dense" else SparseBatch
    return rows, kind(batch, local, rows.size)
