"""Answers of a model=dssm endpoint (serving.py hands it the parsed request).

Instances, told apart as serving.py tells them (or by "task"):
  {"task": "add_item", "item_id": i, "title": .., "genres": .., ...}  adds (or replaces) a catalogue item from
                                      its features ("image": its numbers, where the model has an image tower);
                                      answered {"item_id", "added" | "replaced", "known_words", "unknown_words"}.
                                      Runs before the request's other instances.
  {"user_id": u, "item_id": i}        the pair's score, answered {"score": cosine}
  {"user_id": u, "item": {features}}  the score of an item given by its features, not added
  {"user_id": u[, "k", "exclude_rated"]}  top-k of the whole catalogue: items never rated and items added
                                      after deployment included
  {"history": [i, ...][, "k"]}        top-k for a user unseen in training, known by the items they liked
  {"item_id": i[, "k"]}               nearest items by content (cosine of item vectors)
Unknown user ids answer 400 unless "unknown_ids": "fallback": the user tower without an id or history.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from byoc_runtime.errors import BadRequest

from .dssm import Catalogue, DssmModel, image_array
from .item_features import words_of
from .recommender import top_k

TASKS = {"add_item": "add", "add_items": "add", "add": "add"}
ADD_FIRST = "; add them first with their features (task add_item)"


def predict(query, model: DssmModel, fallback: bool, task_of, raw_id, k_of) -> list[dict[str, Any]]:
    model.sync()  # items another worker added
    tasks = {}
    for number, instance in enumerate(query.instances):
        task = instance.get("task", query.options.get("task"))
        if task in TASKS:
            tasks[number] = "add"
        elif "history" in instance and "user_id" not in instance:
            tasks[number] = "recommend"
        elif "item" in instance and "user_id" in instance:
            tasks[number] = "rating"
        elif "in0" in instance or "in1" in instance:
            raise BadRequest(f"instance {number}: a dssm model answers user_id/item_id instances, not in0/in1")
        else:
            tasks[number] = task_of(number, instance, query.options)
            if tasks[number] == "embed":
                raise BadRequest(f"instance {number}: a dssm model has no embed task")
    answers: list[dict[str, Any] | None] = [None] * len(query.instances)
    added = [n for n, task in tasks.items() if task == "add"]
    if added:
        _add(model, query, added, raw_id, answers)
    catalogue = model.catalogue  # one snapshot for the rest of the request
    for task, handler in (("rating", _scores), ("recommend", _recommend), ("similar", _similar)):
        numbers = [n for n, t in tasks.items() if t == task]
        if numbers:
            handler(model, catalogue, query, numbers, fallback, raw_id, k_of, answers)
    return answers  # type: ignore[return-value]


def _features(model: DssmModel, number: int, instance: dict[str, Any], skip: tuple[str, ...]) -> dict[str, Any]:
    fields = {key: value for key, value in instance.items() if key not in skip}
    try:
        words_of(fields)
        if fields.get("image") is not None:
            if model.towers.image_size is None:
                raise ValueError("this model was trained without item images (no item_images channel)")
            image_array(fields["image"], model.towers.image_size)
    except ValueError as err:
        raise BadRequest(f"instance {number}: {err}") from None
    return fields


def _add(model: DssmModel, query, numbers: list[int], raw_id, answers: list) -> None:
    items = []
    for n in numbers:
        raw = raw_id(n, query.instances[n], "item_id")
        items.append({"item_id": raw, **_features(model, n, query.instances[n], ("task", "item_id"))})
    before = model.catalogue
    words = [words_of({k: v for k, v in item.items() if k != "item_id"}) for item in items]
    _, known = model.vocabulary.encode(words)
    model.add_items(items)
    for n, item, item_words, count in zip(numbers, items, words, known.tolist(), strict=True):
        answers[n] = {
            "item_id": item["item_id"],
            "replaced" if before.lookup(item["item_id"]) >= 0 else "added": True,
            "known_words": count,
            "unknown_words": len(item_words) - count,
        }


def _user_vectors(model: DssmModel, catalogue: Catalogue, query, numbers, fallback, raw_id):
    """(vectors, rows to exclude per instance: the user's rated items, or their history)."""
    vectors = np.empty((len(numbers), model.user_vectors.shape[1]), np.float32)
    excluded: list[np.ndarray] = []
    unknown = []
    for row, n in enumerate(numbers):
        instance = query.instances[n]
        user = -1
        if "user_id" in instance:
            raw = raw_id(n, instance, "user_id")
            user = model.users.lookup(raw)
            if user < 0 and not fallback:
                unknown.append((n, raw))
        history = instance.get("history")
        if user >= 0:
            vectors[row] = model.user_vectors[user]
            excluded.append(model.rated_rows(user))
            continue
        liked = _history_rows(n, history, catalogue) if history is not None else np.zeros(0, np.int64)
        vectors[row] = model.history_vectors(catalogue, [liked])[0]
        excluded.append(liked)
    if unknown:
        shown = ", ".join(f"{raw!r} (instance {n})" for n, raw in unknown[:10])
        raise BadRequest(
            f"unknown user id(s) not seen in training: {shown}; send the items the user liked as "
            '"history", or "unknown_ids": "fallback"'
        )
    return vectors, excluded


def _history_rows(number: int, history: Any, catalogue: Catalogue) -> np.ndarray:
    if not isinstance(history, list) or len(history) > 10000:
        raise BadRequest(f"instance {number}: history must be a list of (at most 10,000) item ids")
    return _catalogue_rows(catalogue, history, f"instance {number}: history names item(s) not in the catalogue", "")


def _catalogue_rows(catalogue: Catalogue, raws: list, what: str = "unknown item id(s)", hint: str = ADD_FIRST):
    """Rows of item ids; any id not in the catalogue answers 400 `what: [the first ten]hint`."""
    rows = np.array([catalogue.lookup(raw) for raw in raws], dtype=np.int64)
    if (rows < 0).any():
        missing = [raw for raw, row in zip(raws, rows.tolist(), strict=True) if row < 0][:10]
        raise BadRequest(f"{what}: {missing}{hint}")
    return rows


def _scores(model, catalogue, query, numbers, fallback, raw_id, k_of, answers) -> None:
    vectors, _ = _user_vectors(model, catalogue, query, numbers, fallback, raw_id)
    item_vectors = np.empty_like(vectors)
    inline = [row for row, n in enumerate(numbers) if "item" in query.instances[n]]
    if inline:
        fields = []
        for row in inline:
            given = query.instances[numbers[row]]["item"]
            if not isinstance(given, dict):
                raise BadRequest(f"instance {numbers[row]}: item must be an object of features")
            fields.append(_features(model, numbers[row], given, ("item_id",)))
        item_vectors[inline] = model.item_vectors(fields)
    by_id = [row for row in range(len(numbers)) if row not in set(inline)]
    if by_id:
        raws = [raw_id(numbers[row], query.instances[numbers[row]], "item_id") for row in by_id]
        item_vectors[by_id] = catalogue.vectors[_catalogue_rows(catalogue, raws)]
    for row, n in enumerate(numbers):
        answers[n] = {"score": float(vectors[row] @ item_vectors[row])}


def _recommend(model, catalogue, query, numbers, fallback, raw_id, k_of, answers) -> None:
    ks = [k_of(n, query.instances[n], query.options, "recommend") for n in numbers]
    vectors, excluded = _user_vectors(model, catalogue, query, numbers, fallback, raw_id)
    scores = vectors @ catalogue.vectors.T
    for row, n in enumerate(numbers):
        flag = query.instances[n].get("exclude_rated", query.options.get("exclude_rated", True))
        if not isinstance(flag, bool):
            raise BadRequest(f"instance {n}: exclude_rated must be true or false, got {flag!r}")
        if flag:
            scores[row, excluded[row]] = -np.inf
    top, values = top_k(scores, max(ks))
    for row, n in enumerate(numbers):
        answer = {"recommendations": _ranked(catalogue, top[row], values[row], ks[row], "score")}
        if "user_id" in query.instances[n]:
            answer = {"user_id": query.instances[n]["user_id"], **answer}
        answers[n] = answer


def _similar(model, catalogue, query, numbers, fallback, raw_id, k_of, answers) -> None:
    raws = [raw_id(n, query.instances[n], "item_id") for n in numbers]
    ks = [k_of(n, query.instances[n], query.options, "similar") for n in numbers]
    rows = _catalogue_rows(catalogue, raws)
    similarity = catalogue.vectors[rows] @ catalogue.vectors.T
    similarity[np.arange(len(rows)), rows] = -np.inf
    top, values = top_k(similarity, max(ks))
    for row, n in enumerate(numbers):
        answers[n] = {"item_id": raws[row], "similar_items": _ranked(catalogue, top[row], values[row], ks[row],
                                                                     "similarity")}  # fmt: skip


def _ranked(catalogue: Catalogue, rows: np.ndarray, values: np.ndarray, k: int, name: str) -> list[dict[str, Any]]:
    ranked = []
    for row, value in zip(rows[:k].tolist(), values[:k].tolist(), strict=True):
        if not np.isfinite(value):
            break
        entry = {"item_id": catalogue.id_of(row), name: value}
        title = catalogue.title(row)
        if title:
            entry["title"] = title
        ranked.append(entry)
    return ranked
