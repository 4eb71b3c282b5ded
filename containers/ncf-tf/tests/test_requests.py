"""Request parsing (no TensorFlow): every accepted form, and a 400 for everything else."""

from __future__ import annotations

import numpy as np
import pytest

from byoc_runtime.errors import BadRequest
from ncf_tf.artifacts import Extras, IdMaps
from ncf_tf.requests import PairQuery, TopKQuery, parse

# 3 users with raw ids 10, 20, 30; 4 items with raw ids 100..400.
EXTRAS = Extras(IdMaps(np.array([10, 20, 30]), np.array([100, 200, 300, 400])), np.array([0, 1, 1, 2]),
                np.array([0, 3]), {})


def pairs(data):
    query = parse(data, EXTRAS)
    assert isinstance(query, PairQuery)
    return query.users.tolist(), query.items.tolist()


@pytest.mark.parametrize(
    "data",
    [
        {"instances": [{"input_1": 0, "input_2": 3}, {"input_1": 2, "input_2": 1}]},
        {"inputs": {"input_1": [0, 2], "input_2": [3, 1]}},
        {"inputs": {"input_1": [[0], [2]], "input_2": [[3], [1]]}},
        {"instances": [{"user_id": 10, "item_id": 400}, {"user_id": 30, "item_id": 200}]},
        {"instances": [{"user": 0, "item": 3}, {"user": 2, "item": 1}]},
        {"instances": [[0, 3], [2, 1]]},
        [[0, 3], [2.0, 1.0]],
        np.array([[0, 3], [2, 1]]),
        {"instances": [{"input_1": [1, 0, 0], "input_2": [0, 0, 0, 1]},
                       {"input_1": [0, 0, 1], "input_2": [0, 1, 0, 0]}]},
        {"inputs": {"input_1": [[1, 0, 0], [0, 0, 1]], "input_2": [[0, 0, 0, 1], [0, 1, 0, 0]]}},
    ],
)
def test_pair_forms(data):
    assert pairs(data) == ([0, 2], [3, 1])


def test_single_instance_object():
    assert pairs({"user_id": 20, "item_id": 100}) == ([1], [0])


def test_top_k_forms():
    query = parse({"instances": [{"user_id": 20, "top_k": 2}, {"user_id": 10, "top_k": 2}]}, EXTRAS)
    assert isinstance(query, TopKQuery) and query.users.tolist() == [1, 0] and query.k == 2 and query.exclude_seen
    query = parse({"instances": [{"input_1": 2, "top_k": 99, "exclude_seen": False}]}, EXTRAS)
    assert query.k == 4 and not query.exclude_seen  # capped at the number of items
    assert parse({"instances": [{"user_id": 30}]}, EXTRAS).k == 4  # default 10, capped at the 4 items


@pytest.mark.parametrize(
    "data, message",
    [
        ({"instances": []}, "at least one"),
        ({"instances": [{"input_1": 3, "input_2": 0}]}, "out of range"),
        ({"instances": [{"input_1": -1, "input_2": 0}]}, "out of range"),
        ({"instances": [{"input_1": 0.5, "input_2": 0}]}, "integers"),
        ({"instances": [{"input_1": "0", "input_2": 0}]}, "integers"),
        ({"instances": [{"input_1": True, "input_2": 0}]}, "integers"),
        ({"instances": [{"input_1": None, "input_2": 0}]}, "integers"),
        ({"instances": [{"user_id": 11, "item_id": 100}]}, "unknown user_id"),
        ({"instances": [{"input_1": [1, 1, 0], "input_2": 0}]}, "not one-hot"),
        ({"instances": [{"input_1": [0.5, 0.5, 0], "input_2": 0}]}, "not one-hot"),
        ({"instances": [{"input_1": [1, 0], "input_2": 0}]}, "length 3"),
        ({"inputs": {"input_1": [0, 1], "input_2": [0]}}, "equal length"),
        ({"inputs": {"input_1": [0, 1]}}, "both"),
        ({"instances": [{"input_1": 0, "input_2": 1}, {"input_1": 0}]}, "mix"),
        ({"instances": [{"input_1": 0, "input_2": 1}, {"user": 0, "item": 1}]}, "some instances"),
        ({"instances": [[0, 1, 2]]}, "rows"),
        ({"instances": [[0, 1], {"input_1": 0}]}, "all objects"),
        ({"instances": [{"user_id": 10, "top_k": 0}]}, "top_k"),
        ({"instances": [{"user_id": 10, "top_k": 2}, {"user_id": 20, "top_k": 3}]}, "top_k"),
        ({"instances": [{"foo": 1}]}, "needs a user"),
        ({"instances": [{"user_id": 10}] * 101}, "at most"),
        ("just a string", "instances"),
        (np.zeros((2, 3)), "pairs"),
    ],
)
def test_bad_requests_are_400(data, message):
    with pytest.raises(BadRequest, match=message):
        parse(data, EXTRAS)


def test_id_maps_round_trip():
    assert EXTRAS.maps.user_index(np.array([30, 10, 15])).tolist() == [2, 0, -1]
    assert EXTRAS.seen(0).tolist() == [0] and EXTRAS.seen(1).tolist() == [] and EXTRAS.seen(2).tolist() == [3]
