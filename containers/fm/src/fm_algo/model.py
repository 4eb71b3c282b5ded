"""An FM's prediction in numpy: w0 + <w, x> + 1/2 * sum_f ((xV)_f^2 - (x^2)(V^2)_f), in O(k * nnz) on CSR.

Used by the endpoint and for test-set scores; the trainer's gradients are tested against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .batch import segment_sum
from .data import CsrData


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


@dataclass(frozen=True)
class FMModel:
    w0: float
    w: np.ndarray  # (d,)
    V: np.ndarray  # (d, k)
    predictor_type: str

    @property
    def feature_dim(self) -> int:
        return int(self.w.shape[0])

    @property
    def num_factors(self) -> int:
        return int(self.V.shape[1])

    def raw_scores(self, x: CsrData | np.ndarray) -> np.ndarray:
        """The FM's output before the link function, for a CSR batch or a dense (rows, d) matrix."""
        if isinstance(x, np.ndarray):
            x = np.asarray(x, dtype=np.float32)
            xv = x @ self.V
            pairs = 0.5 * ((xv * xv).sum(axis=1) - (x * x) @ (self.V * self.V).sum(axis=1))
            return self.w0 + x @ self.w + pairs
        scaled = self.V[x.indices] * x.values[:, None]  # (nnz, k): v_j * x_j for every stored x_j
        xv = segment_sum(scaled, x.indptr)
        squares = segment_sum((scaled * scaled).sum(axis=1), x.indptr)
        linear = segment_sum(self.w[x.indices] * x.values, x.indptr)
        return self.w0 + linear + 0.5 * ((xv * xv).sum(axis=1) - squares)

    def scores(self, x: CsrData | np.ndarray) -> np.ndarray:
        """Probabilities of label 1 (binary_classifier) or predicted values (regressor)."""
        raw = self.raw_scores(x)
        return sigmoid(raw) if self.predictor_type == "binary_classifier" else raw
