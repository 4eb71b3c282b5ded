"""Serving handlers (BYOC_SERVE=ncf_tf.serving): the SavedModel answers TF-Serving-style requests on
/invocations with {"predictions": [[p], ...]}, or top-k recommendations for users over every item."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime import codecs
from byoc_runtime.errors import NotAcceptable

from . import artifacts
from .requests import PairQuery, TopKQuery, parse

ACCEPTS = (codecs.JSON, codecs.CSV, codecs.NPY)
CHUNK = 1 << 16  # rows per model call: bounds the memory of huge batch requests


@dataclass
class NcfModel:
    signature: Any  # the SavedModel's serving_default
    extras: artifacts.Extras
    loaded: Any = None  # the SavedModel object: the signature's variables belong to it, so keep it alive

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        out = [
            self.signature(input_1=tf.constant(users[i : i + CHUNK]), input_2=tf.constant(items[i : i + CHUNK]))
            for i in range(0, len(users), CHUNK)
        ]
        return np.concatenate([next(iter(o.values())).numpy().reshape(-1) for o in out])

    def top_k(self, query: TopKQuery) -> list[dict[str, Any]]:
        n_items = self.extras.n_items
        all_items = np.arange(n_items, dtype=np.int32)
        scores = self.score(np.repeat(query.users, n_items), np.tile(all_items, len(query.users)))
        scores = scores.reshape(len(query.users), n_items)
        answers = []
        for row, user in zip(scores, query.users, strict=True):
            if query.exclude_seen:
                row = row.copy()
                row[self.extras.seen(int(user))] = -np.inf
            k = min(query.k, int(np.isfinite(row).sum()))
            best = np.argpartition(-row, k - 1)[:k] if k else np.empty(0, np.int64)
            best = best[np.argsort(-row[best], kind="stable")]
            answers.append({
                "user_id": self.extras.maps.user_ids[user].item(),
                "item_ids": self.extras.maps.item_ids[best].tolist(),
                "items": best.tolist(),
                "scores": row[best].astype(float).tolist(),
            })
        return answers


def model_fn(model_dir: str) -> NcfModel:
    import tensorflow as tf

    root = Path(model_dir)
    loaded = tf.saved_model.load(str(artifacts.saved_model_dir(root)))
    model = NcfModel(loaded.signatures["serving_default"], artifacts.read_extras(root), loaded)
    model.score(np.zeros(1, np.int32), np.zeros(1, np.int32))  # trace once before the first request
    return model


def input_fn(body: bytes, content_type: str) -> Any:
    return codecs.decode(body, content_type)


def predict_fn(data: Any, model: NcfModel) -> Any:
    query = parse(data, model.extras)
    if isinstance(query, TopKQuery):
        return {"predictions": model.top_k(query)}
    assert isinstance(query, PairQuery)
    return model.score(query.users, query.items).reshape(-1, 1)


def output_fn(prediction: Any, accept: str) -> bytes:
    kind = codecs.media_type(accept)
    if isinstance(prediction, dict):
        if kind != codecs.JSON:
            raise NotAcceptable("top-k recommendations are answered as application/json only")
        return codecs.encode(prediction, accept)
    if kind in (codecs.CSV, codecs.NPY):
        return codecs.encode(prediction, accept)
    return codecs.encode({"predictions": prediction.round(7).tolist()}, accept)
