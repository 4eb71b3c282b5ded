"""Serving handlers (BYOC_SERVE=mxnet_mf.serving): ratings, top-k recommendations and similar items.

The task of each instance is its "task" field ("rating" | "recommend" | "similar"), or the request's
top-level "task", or else read off its fields:
  {"in0": [user], "in1": [item]}      rating, answered {"scores": [r]} (Object2Vec's request/response shape);
                                      an Object2Vec softmax model: {"scores": [p0, p1], "predicted_label": k}
  {"in0": [user]} or {"in1": [item]}  the tower's encoding, answered {"embeddings": [...]} (Object2Vec's
                                      encoder-embedding inference)
  {"user_id": u, "item_id": i}        rating, answered {"rating": r}
  {"user_id": u[, "k", "exclude_rated"]}  top-k items for the user (default k=10, exclude_rated=true)
  {"item_id": i[, "k"]}               nearest items by cosine similarity of item embeddings (default k=5)
One request may mix tasks; each task runs vectorised over all its instances. CSV rows `user,item` are
ratings (answered one rating per line). Ids are the ones of the training files (196 or "196").
JSON Lines requests (one instance per line, application/jsonlines) and answers (Accept:
application/jsonlines, one prediction per line) work as Object2Vec's do. An answer over SageMaker's 6 MB
response limit (1,680 movies' 300-float embeddings are 10.5 MB of JSON) is a 413 that says how many
instances fit (the shared runtime's limit, BYOC_MAX_RESPONSE_MB).

A model=dssm model answers through dssm_serving.py (scores are cosines; items can be added by their features).

Unknown ids answer 400 naming them, unless the request says "unknown_ids": "fallback": a rating then
falls back to the known side's bias + the global bias (mlp: the mean rating; an Object2Vec classifier
without biases: the training labels' share of each class) and a recommendation for
an unknown user to the items with the highest bias (popularity). Similar items of an unknown item have
no fallback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime import codecs
from byoc_runtime.codecs import csv_codec
from byoc_runtime.errors import BadRequest

from . import dssm_serving
from .dssm import DssmModel
from .recommender import MODEL_SETTINGS, Recommender

ACCEPTS = (codecs.JSON, codecs.JSONLINES, codecs.CSV)
TASKS = {
    "rating": "rating",
    "recommend": "recommend",
    "recommendation": "recommend",
    "similar": "similar",
    "similar_items": "similar",
    "embed": "embed",
    "embeddings": "embed",
}
DEFAULT_K = {"recommend": 10, "similar": 5}
MAX_K = 1000
RECOMMEND_CHUNK = 512  # users scored at once: bounds the (users x items) score matrix


@dataclass
class Query:
    instances: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)  # request-wide defaults: task, k, exclude_rated


def model_fn(model_dir: str) -> Recommender | DssmModel:
    settings = json.loads((Path(model_dir) / MODEL_SETTINGS).read_text())
    if settings.get("model") == "dssm":
        return DssmModel.load(Path(model_dir), settings)
    return Recommender.load(Path(model_dir))


def input_fn(body: bytes, content_type: str) -> Query:
    kind = codecs.media_type(content_type)
    if kind == codecs.CSV:
        return _csv_query(body)
    data = codecs.decode(body, content_type)
    options: dict[str, Any] = {}
    if isinstance(data, dict):
        options = {key: value for key, value in data.items() if key not in ("instances", "inputs")}
        if "instances" not in data and "inputs" not in data:
            data, options = [data], {}  # a single bare instance
    instances = codecs.instances_of(data)
    if not isinstance(instances, list) or not instances:
        raise BadRequest('expected {"instances": [...]} with at least one instance')
    for number, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise BadRequest(f'instance {number} must be an object such as {{"user_id": 1, "item_id": 2}}')
    return Query(instances, options)


def _csv_query(body: bytes) -> Query:
    try:
        rows = csv_codec.parse_rows(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(f"Could not parse the text/csv body: {err}") from None
    for number, row in enumerate(rows, start=1):
        if len(row) != 2:
            raise BadRequest(f"CSV row {number}: expected user,item (2 columns), got {len(row)}")
    return Query([{"user_id": user, "item_id": item} for user, item in rows])


def predict_fn(query: Query, model: Recommender | DssmModel) -> list[dict[str, Any]]:
    fallback = _fallback_mode(query.options)
    if isinstance(model, DssmModel):
        return dssm_serving.predict(query, model, fallback, _task_of, _raw_id, _k_of)
    answers = _object2vec_ratings(query, model)
    if answers is not None:
        return answers
    return _predict_any(query, model, fallback)


def _object2vec_ratings(query: Query, model: Recommender) -> list[dict[str, Any]] | None:
    """The usual request, answered in one pass: every instance exactly {"in0": [user], "in1": [item]} with
    whole-number ids seen in training, no task named, a regression model. None for anything else, which
    _predict_any reads instance by instance (with its checks and error messages)."""
    if "task" in query.options or model.classifier:
        return None
    users, items = [], []
    for instance in query.instances:
        if len(instance) != 2:
            return None
        user, item = instance.get("in0"), instance.get("in1")
        if type(user) is not list or type(item) is not list or len(user) != 1 or len(item) != 1:
            return None
        users.append(user[0])
        items.append(item[0])
    if not (all(type(u) is int for u in users) and all(type(i) is int for i in items)):
        return None
    user_index, item_index = _indices(model.users, users), _indices(model.items, items)
    if (user_index < 0).any() or (item_index < 0).any():
        return None
    return [{"scores": [rating]} for rating in model.predict(user_index, item_index).tolist()]


def _predict_any(query: Query, model: Recommender, fallback: bool) -> list[dict[str, Any]]:
    groups: dict[str, list[int]] = {"rating": [], "recommend": [], "similar": [], "embed": []}
    for number, instance in enumerate(query.instances):
        groups[_task_of(number, instance, query.options)].append(number)
    answers: list[dict[str, Any] | None] = [None] * len(query.instances)
    if groups["rating"]:
        _ratings(model, query, groups["rating"], fallback, answers)
    if groups["recommend"]:
        _recommendations(model, query, groups["recommend"], fallback, answers)
    if groups["similar"]:
        _similar(model, query, groups["similar"], answers)
    if groups["embed"]:
        _embeddings(model, query, groups["embed"], answers)
    return answers  # type: ignore[return-value]


def output_fn(predictions: list[dict[str, Any]], accept: str) -> bytes:
    kind = codecs.media_type(accept)
    if kind == codecs.CSV:
        return codecs.encode([_csv_row(p) for p in predictions], accept)
    if kind == codecs.JSONLINES:
        return codecs.encode(predictions, accept)
    return codecs.encode({"predictions": predictions}, accept)


# ---------------------------------------------------------------------- request parsing
def _fallback_mode(options: dict[str, Any]) -> bool:
    mode = options.get("unknown_ids", "error")
    if mode not in ("error", "fallback"):
        raise BadRequest(f'"unknown_ids" must be "error" or "fallback", got {mode!r}')
    return mode == "fallback"


def _task_of(number: int, instance: dict[str, Any], options: dict[str, Any]) -> str:
    task = instance.get("task", options.get("task"))
    if task is not None:
        if task not in TASKS:
            raise BadRequest(f"instance {number}: unknown task {task!r}; use rating, recommend or similar")
        return TASKS[task]
    if "in0" in instance and "in1" in instance:
        return "rating"
    if "in0" in instance or "in1" in instance:
        return "embed"
    if "user_id" in instance and "item_id" in instance:
        return "rating"
    if "user_id" in instance:
        return "recommend"
    if "item_id" in instance:
        return "similar"
    raise BadRequest(
        f"instance {number} has none of in0/in1, user_id, item_id: cannot tell a rating from a recommendation"
    )


def _raw_id(number: int, instance: dict[str, Any], key: str) -> Any:
    if key not in instance:
        raise BadRequest(f"instance {number} lacks {key!r}")
    value = instance[key]
    if key in ("in0", "in1"):  # Object2Vec sends token lists: [user]
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        else:
            raise BadRequest(f"instance {number}: {key} must be a one-element list such as [196], got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f"instance {number}: {key} must be an id (number or string), got {value!r}")
    return value


def _k_of(number: int, instance: dict[str, Any], options: dict[str, Any], task: str) -> int:
    k = instance.get("k", options.get("k", DEFAULT_K[task]))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise BadRequest(f"instance {number}: k must be a whole number from 1 to {MAX_K}, got {k!r}")
    return k


def _indices(index, raws: list[Any]) -> np.ndarray:
    if index.numeric and all(type(raw) is int for raw in raws):  # the usual request: one vectorised search
        try:
            return index.lookup_array(np.array(raws, dtype=np.int64))
        except OverflowError:  # an id past int64 is unknown: the per-id path says so
            pass
    return np.array([index.lookup(raw) for raw in raws], dtype=np.int64)


def _unknown(
    kind: str, numbers: list[int], raws: list[Any], positions: np.ndarray, fallback: bool = True
) -> BadRequest:
    missing = [(n, r) for n, r, p in zip(numbers, raws, positions, strict=True) if p < 0]
    shown = ", ".join(f"{raw!r} (instance {n})" for n, raw in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    hint = '; send "unknown_ids": "fallback" for a bias-based answer' if fallback else ""
    return BadRequest(f"unknown {kind} id(s) not seen in training: {shown}{more}{hint}")


# ---------------------------------------------------------------------- tasks
def _pair_ids(query: Query, numbers: list[int]) -> tuple[list[bool], list[Any], list[Any]]:
    """Which instances are Object2Vec-shaped, and their user and item ids. The usual request ({"in0": [196],
    "in1": [242]} with whole numbers) is read in one pass; any other instance goes through _raw_id's checks."""
    object2vec, users, items = [], [], []
    for n in numbers:
        instance = query.instances[n]
        o2v = "in0" in instance or "in1" in instance
        user, item = instance.get("in0"), instance.get("in1")
        if o2v and type(user) is list and type(item) is list and len(user) == 1 and len(item) == 1:
            user, item = user[0], item[0]
            if type(user) is int and type(item) is int:
                object2vec.append(True)
                users.append(user)
                items.append(item)
                continue
        object2vec.append(o2v)
        users.append(_raw_id(n, instance, "in0" if o2v else "user_id"))
        items.append(_raw_id(n, instance, "in1" if o2v else "item_id"))
    return object2vec, users, items


def _ratings(model: Recommender, query: Query, numbers: list[int], fallback: bool, answers: list) -> None:
    object2vec, user_raw, item_raw = _pair_ids(query, numbers)
    users, items = _indices(model.users, user_raw), _indices(model.items, item_raw)
    if not fallback:
        if (users < 0).any():
            raise _unknown("user", numbers, user_raw, users)
        if (items < 0).any():
            raise _unknown("item", numbers, item_raw, items)
    if model.classifier:
        probabilities = model.probabilities(users, items)
        for n, row in zip(numbers, probabilities.tolist(), strict=True):
            answers[n] = {"scores": row, "predicted_label": int(np.argmax(row))}
        return
    ratings = model.predict(users, items)
    for n, o2v, rating in zip(numbers, object2vec, ratings.tolist(), strict=True):
        answers[n] = {"scores": [rating]} if o2v else {"rating": rating}


def _recommendations(model: Recommender, query: Query, numbers: list[int], fallback: bool, answers: list) -> None:
    user_raw = [_raw_id(n, query.instances[n], "user_id") for n in numbers]
    ks = [_k_of(n, query.instances[n], query.options, "recommend") for n in numbers]
    exclude = []
    for n in numbers:
        flag = query.instances[n].get("exclude_rated", query.options.get("exclude_rated", True))
        if not isinstance(flag, bool):
            raise BadRequest(f"instance {n}: exclude_rated must be true or false, got {flag!r}")
        exclude.append(flag)
    users = _indices(model.users, user_raw)
    if (users < 0).any() and not fallback:
        raise _unknown("user", numbers, user_raw, users)
    exclude_mask, k_max = np.array(exclude), max(ks)
    known = np.flatnonzero(users >= 0)
    for start in range(0, len(known), RECOMMEND_CHUNK):
        rows = known[start : start + RECOMMEND_CHUNK]
        top, scores = model.recommend(users[rows], k_max, exclude_mask[rows])
        for row, items, values in zip(rows.tolist(), top, scores, strict=True):
            answers[numbers[row]] = {
                "user_id": user_raw[row],
                "recommendations": _ranked(model, items, values, ks[row], "score"),
            }
    unknown = np.flatnonzero(users < 0)
    if len(unknown):
        top, scores = model.popular(k_max)
        for row in unknown.tolist():
            answers[numbers[row]] = {
                "user_id": user_raw[row],
                "recommendations": _ranked(model, top, scores, ks[row], "score"),
                "fallback": "popularity: the user was not seen in training",
            }


def _similar(model: Recommender, query: Query, numbers: list[int], answers: list) -> None:
    item_raw = [_raw_id(n, query.instances[n], "item_id") for n in numbers]
    ks = [_k_of(n, query.instances[n], query.options, "similar") for n in numbers]
    items = _indices(model.items, item_raw)
    if (items < 0).any():
        raise _unknown("item", numbers, item_raw, items, fallback=False)
    top, similarity = model.similar(items, max(ks))
    for row, n in enumerate(numbers):
        answers[n] = {
            "item_id": item_raw[row],
            "similar_items": _ranked(model, top[row], similarity[row], ks[row], "similarity"),
        }


def _embeddings(model: Recommender, query: Query, numbers: list[int], answers: list) -> None:
    """Object2Vec's single-input inference: in0 -> the user tower's encoding, in1 -> the item tower's."""
    for key, index, encode, kind in (
        ("in0", model.users, model.encode_users, "user"),
        ("in1", model.items, model.encode_items, "item"),
    ):
        side = [n for n in numbers if key in query.instances[n]]
        if not side:
            continue
        raws = [_raw_id(n, query.instances[n], key) for n in side]
        positions = _indices(index, raws)
        if (positions < 0).any():
            raise _unknown(kind, side, raws, positions, fallback=False)
        for n, row in zip(side, encode(positions).tolist(), strict=True):
            answers[n] = {"embeddings": row}


def _ranked(model: Recommender, items: np.ndarray, values: np.ndarray, k: int, name: str) -> list[dict[str, Any]]:
    ranked = []
    for item, value in zip(items[:k].tolist(), values[:k].tolist(), strict=True):
        if not np.isfinite(value):  # fewer than k candidates left after excluding rated items
            break
        entry = {"item_id": model.items.id_of(item), name: value}
        title = model.title(item)
        if title is not None:
            entry["title"] = title
        ranked.append(entry)
    return ranked


def _csv_row(prediction: dict[str, Any]) -> list[Any]:
    if "rating" in prediction:
        return [prediction["rating"]]
    if "score" in prediction:
        return [prediction["score"]]
    if "scores" in prediction:
        return prediction["scores"]
    ranked = prediction.get("recommendations", prediction.get("similar_items", []))
    return [entry["item_id"] for entry in ranked]
