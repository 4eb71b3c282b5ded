"""Endpoint handlers with the built-in algorithm's request and response shapes.

Requests: application/json `{"instances": [{"features": [...]}]}` (dense) or
`{"instances": [{"data": {"features": {"keys": [...], "shape": [d], "values": [...]}}}]}` (sparse),
application/jsonlines (one such instance per line), text/csv (dense rows), application/x-recordio-protobuf
(dense or sparse records). Responses: `{"predictions": [{"score": s, "predicted_label": l}]}` (regressor:
`{"score": s}`) as JSON, JSON Lines (batch transform), recordIO-protobuf or CSV.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from byoc_runtime import codecs
from byoc_runtime.codecs.recordio_protobuf import DecodedRecords
from byoc_runtime.errors import BadRequest

from . import artifact
from .data import CsrData, from_decoded
from .model import FMModel

ACCEPTS = (codecs.JSON, codecs.JSONLINES, codecs.RECORDIO, codecs.CSV)


def model_fn(model_dir: str) -> FMModel:
    return artifact.load(model_dir)


def _sparse_instance(instance: dict, index: int) -> tuple[list, list, int]:
    features = instance["data"]["features"] if "data" in instance else instance["features"]
    if not isinstance(features, dict):
        raise BadRequest(f'instance {index}: "data"."features" must be an object with keys, shape and values')
    keys, values, shape = features.get("keys"), features.get("values"), features.get("shape")
    if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
        raise BadRequest(f"instance {index}: sparse features need equally long 'keys' and 'values' lists")
    if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int)):
        raise BadRequest(f"instance {index}: sparse features need 'shape': [feature_dim]")
    return keys, values, shape[0]


def _from_instances(instances: Any) -> CsrData | np.ndarray:
    if isinstance(instances, dict):  # one bare instance (JSON Lines lines are these)
        instances = [instances]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('the request needs a non-empty "instances" list')
    if not all(isinstance(item, dict) for item in instances):
        dense = np.asarray(instances, dtype=np.float32)  # bare rows of numbers
        if dense.ndim > 2:
            raise BadRequest("instances must be rows of numbers")
        return dense.reshape(1, -1) if dense.ndim == 1 else dense
    sparse = [("data" in item) or isinstance(item.get("features"), dict) for item in instances]
    if all(sparse):
        rows = [_sparse_instance(item, i) for i, item in enumerate(instances)]
        widths = {width for _, _, width in rows}
        if len(widths) != 1:
            raise BadRequest(f"the instances have different shapes: {sorted(widths)}")
        indptr = np.cumsum([0] + [len(keys) for keys, _, _ in rows]).astype(np.int64)
        keys = [k for keys, _, _ in rows for k in keys]
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys):
            raise BadRequest("sparse 'keys' must be integers")
        indices = np.asarray(keys, dtype=np.int64)
        values = np.asarray([v for _, vals, _ in rows for v in vals], dtype=np.float32)
        return CsrData(indptr, indices, values, None, widths.pop())
    if any(sparse):
        raise BadRequest("the instances mix dense and sparse features")
    try:
        return np.asarray([item["features"] for item in instances], dtype=np.float32)
    except KeyError:
        raise BadRequest('every dense instance needs "features": [numbers]') from None


def input_fn(body: bytes, content_type: str) -> CsrData | np.ndarray:
    data = codecs.decode(body, content_type)
    if isinstance(data, DecodedRecords):
        return from_decoded(data)
    if isinstance(data, np.ndarray):  # CSV (or NPY): dense rows
        if data.ndim > 2:
            raise BadRequest(f"expected rows of features, got an array of shape {list(data.shape)}")
        return data.astype(np.float32).reshape(1, -1) if data.ndim == 1 else data.astype(np.float32)
    try:
        return _from_instances(codecs.instances_of(data))
    except (TypeError, ValueError, KeyError, AttributeError) as err:  # wrong JSON shapes, non-numbers
        raise BadRequest(f"could not read the instances: {err}") from None


def _check(x: CsrData | np.ndarray, model: FMModel) -> None:
    width = x.num_cols if isinstance(x, CsrData) else (x.shape[1] if x.ndim == 2 else None)
    if width != model.feature_dim:
        raise BadRequest(f"each instance needs {model.feature_dim} features (feature_dim), got {width}")
    if isinstance(x, CsrData):
        if x.nnz and (x.indices.min() < 0 or x.indices.max() >= model.feature_dim):
            raise BadRequest(f"sparse keys must lie in [0, {model.feature_dim})")
        values = x.values
    else:
        values = x
    if not np.all(np.isfinite(values)):
        raise BadRequest("features must be finite numbers")


def predict_fn(x: CsrData | np.ndarray, model: FMModel) -> list[dict[str, float]]:
    _check(x, model)
    scores = model.scores(x)
    if model.predictor_type == "binary_classifier":
        return [{"score": float(s), "predicted_label": float(s >= 0.5)} for s in scores]
    return [{"score": float(s)} for s in scores]


def output_fn(predictions: list[dict[str, float]], accept: str) -> bytes:
    if codecs.media_type(accept) == codecs.CSV:
        return codecs.encode([list(p.values()) for p in predictions], accept)
    return codecs.encode({"predictions": predictions}, accept)
