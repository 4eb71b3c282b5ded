"""TF-Serving-style request bodies -> index arrays, without TensorFlow (unit-testable, and cheap per request).

Accepted (JSON; CSV and NPY rows of `user,item` indices too):
  {"instances": [{"input_1": 3, "input_2": 17}, ...]}        indices, the SavedModel's own input names
  {"inputs": {"input_1": [3, 4], "input_2": [17, 2]}}        TF Serving's columnar form
  {"instances": [{"user_id": 196, "item_id": 242}, ...]}     raw MovieLens ids, mapped with the saved id maps
  input_1 / input_2 as one-hot vectors (the course's client)  converted with argmax; anything else is a 400
  {"instances": [{"user_id": 196, "top_k": 10}]}             top-k recommendation over all items
  [[3, 17], [4, 2]]                                          rows of user index, item index
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from byoc_runtime import codecs
from byoc_runtime.errors import BadRequest

from .artifacts import Extras

USER_KEYS = ("input_1", "user")  # model indices
ITEM_KEYS = ("input_2", "item")
RAW_USER, RAW_ITEM = "user_id", "item_id"  # raw ids from the ratings file
DEFAULT_TOP_K = 10
MAX_TOP_K_USERS = 100  # each costs a pass over every item


@dataclass(frozen=True)
class PairQuery:
    users: np.ndarray  # int32 indices
    items: np.ndarray


@dataclass(frozen=True)
class TopKQuery:
    users: np.ndarray
    k: int
    exclude_seen: bool


def parse(data: Any, extras: Extras) -> PairQuery | TopKQuery:
    rows = codecs.instances_of(data)
    if isinstance(rows, dict):
        return _columns(rows, extras) if _is_columnar(rows) else _instances([rows], extras)
    if isinstance(rows, np.ndarray):
        return _pairs(rows, extras)
    if not isinstance(rows, list) or not rows:
        raise BadRequest('Send {"instances": [...]} or {"inputs": {...}} with at least one instance')
    if all(isinstance(r, dict) for r in rows):
        return _instances(rows, extras)
    if any(isinstance(r, dict) for r in rows):
        raise BadRequest("instances must be all objects or all [user, item] rows")
    if not all(isinstance(r, list) and len(r) == 2 for r in rows):
        raise BadRequest("instances must be [user index, item index] rows")
    return _pairs(np.asarray(rows, dtype=object), extras)


def _is_columnar(obj: dict) -> bool:
    return any(isinstance(obj.get(k), list) for k in (*USER_KEYS, *ITEM_KEYS, RAW_USER, RAW_ITEM))


def _pairs(table: np.ndarray, extras: Extras) -> PairQuery:
    if table.ndim == 1 and table.size == 2:
        table = table.reshape(1, 2)
    if table.ndim != 2 or table.shape[1] != 2:
        raise BadRequest(f"rows must be [user index, item index] pairs; got shape {list(table.shape)}")
    return PairQuery(_indices(table[:, 0], extras.n_users, "user"), _indices(table[:, 1], extras.n_items, "item"))


def _columns(obj: dict, extras: Extras) -> PairQuery:
    users = _side(obj, USER_KEYS, RAW_USER, extras, "user")
    items = _side(obj, ITEM_KEYS, RAW_ITEM, extras, "item")
    if users is None or items is None:
        raise BadRequest("inputs need both input_1 (user) and input_2 (item), or user_id and item_id")
    if len(users) != len(items):
        raise BadRequest(f"{len(users)} users but {len(items)} items: the columns must have equal length")
    return PairQuery(users, items)


def _instances(rows: list[dict], extras: Extras) -> PairQuery | TopKQuery:
    has_item = [any(k in r for k in (*ITEM_KEYS, RAW_ITEM)) for r in rows]
    if not any(has_item):
        return _top_k(rows, extras)
    if not all(has_item):
        raise BadRequest("mix of scoring (user + item) and top-k (user only) instances; send them separately")
    columns = {}
    for key in (*USER_KEYS, *ITEM_KEYS, RAW_USER, RAW_ITEM):
        present = [key in r for r in rows]
        if any(present):
            if not all(present):
                raise BadRequest(f"'{key}' is in some instances but not all")
            columns[key] = [r[key] for r in rows]
    return _columns(columns, extras)


def _top_k(rows: list[dict], extras: Extras) -> TopKQuery:
    if len(rows) > MAX_TOP_K_USERS:
        raise BadRequest(f"at most {MAX_TOP_K_USERS} users per top-k request; got {len(rows)}")
    users = _side(_common(rows, (*USER_KEYS, RAW_USER)), USER_KEYS, RAW_USER, extras, "user")
    if users is None:
        raise BadRequest("each instance needs a user (user_id, or input_1 as an index) and an item, or top_k")
    ks = {r.get("top_k", DEFAULT_TOP_K) for r in rows}
    k = ks.pop() if len(ks) == 1 else None
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise BadRequest("top_k must be one positive integer for all instances of a request")
    exclude = rows[0].get("exclude_seen", True)
    if not isinstance(exclude, bool):
        raise BadRequest("exclude_seen must be true or false")
    return TopKQuery(users, min(k, extras.n_items), exclude)


def _common(rows: list[dict], keys: tuple[str, ...]) -> dict:
    for key in keys:
        if all(key in r for r in rows):
            return {key: [r[key] for r in rows]}
    return {}


def _side(obj: dict, index_keys: tuple[str, ...], raw_key: str, extras: Extras, what: str) -> np.ndarray | None:
    size = extras.n_users if what == "user" else extras.n_items
    for key in index_keys:
        if key in obj:
            return _indices_or_one_hot(obj[key], size, key)
    if raw_key in obj:
        raw = _integers(np.asarray(_as_list(obj[raw_key]), dtype=object), raw_key)
        index = extras.maps.user_index(raw) if what == "user" else extras.maps.item_index(raw)
        unknown = raw[index < 0]
        if len(unknown):
            raise BadRequest(f"unknown {raw_key} {unknown[:5].tolist()} (not in the training data)")
        return index.astype(np.int32)
    return None


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _indices_or_one_hot(value: Any, size: int, key: str) -> np.ndarray:
    values = _as_list(value)
    if values and all(isinstance(v, list) for v in values):
        if all(len(v) == 1 for v in values) and size != 1:
            return _indices(np.asarray([v[0] for v in values], dtype=object), size, key)  # TF Serving's [[3], [4]]
        return _one_hot(values, size, key)
    return _indices(np.asarray(values, dtype=object), size, key)


def _one_hot(values: list, size: int, key: str) -> np.ndarray:
    """The course's client sends one-hot vectors; the model takes the index of the 1."""
    if any(len(v) != size for v in values):
        raise BadRequest(f"{key} one-hot vectors must have length {size}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRequest(f"{key} one-hot vectors must hold numbers") from None
    if not (np.isin(array, (0.0, 1.0)).all() and (array.sum(axis=1) == 1).all()):
        raise BadRequest(f"{key} vectors are not one-hot (exactly one 1, the rest 0)")
    return array.argmax(axis=1).astype(np.int32)


def _indices(values: np.ndarray, size: int, what: str) -> np.ndarray:
    values = _integers(np.asarray(values), what)
    bad = values[(values < 0) | (values >= size)]
    if len(bad):
        raise BadRequest(f"{what} index {bad[:5].tolist()} is out of range [0, {size - 1}]")
    return values.astype(np.int32)


def _integers(values: np.ndarray, what: str) -> np.ndarray:
    """Integers only: 3 and 3.0 pass; 3.5, true, "3" and null are refused."""
    if values.dtype == object and any(isinstance(v, bool | str) or v is None for v in values.ravel().tolist()):
        raise BadRequest(f"{what} must be integers")
    if values.dtype.kind not in "iufO":
        raise BadRequest(f"{what} must be integers")
    try:
        floats = values.astype(np.float64)
    except (TypeError, ValueError):
        raise BadRequest(f"{what} must be integers") from None
    if not np.isfinite(floats).all() or (floats != np.round(floats)).any() or (np.abs(floats) > 2**62).any():
        raise BadRequest(f"{what} must be integers")
    return floats.astype(np.int64)
