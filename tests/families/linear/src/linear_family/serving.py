"""Serving handlers of the linear test family (the runtime supplies the codecs and the server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from byoc_runtime import codecs
from byoc_runtime.codecs.recordio_protobuf import DecodedRecords
from byoc_runtime.errors import BadRequest


class LinearModel:
    def __init__(self, weights: np.ndarray, bias: float):
        self.weights, self.bias = weights, bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != self.weights.shape[0]:
            raise BadRequest(f"expected rows of {self.weights.shape[0]} features, got shape {list(x.shape)}")
        return x @ self.weights + self.bias


def model_fn(model_dir: str) -> LinearModel:
    saved = np.load(Path(model_dir) / "model.npz")
    return LinearModel(saved["weights"], float(saved["bias"]))


def input_fn(body: bytes, content_type: str) -> np.ndarray:
    data = codecs.decode(body, content_type)
    if isinstance(data, DecodedRecords):
        return data.features
    rows = codecs.instances_of(data)
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        rows = [row.get("features") for row in rows]
    try:
        x = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRequest('instances must be rows of numbers (or {"features": [...]} objects)') from None
    return x.reshape(1, -1) if x.ndim == 1 else x


def predict_fn(x: np.ndarray, model: LinearModel) -> np.ndarray:
    return model.predict(x)


def output_fn(prediction: np.ndarray, accept: str) -> bytes:
    if codecs.media_type(accept) in (codecs.NPY, codecs.CSV):
        return codecs.encode(prediction, accept)
    return codecs.encode({"predictions": [{"score": float(v)} for v in prediction]}, accept)
