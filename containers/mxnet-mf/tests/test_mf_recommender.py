"""The numpy model the endpoint serves: scores, fallbacks, top-k, similar items, save/load."""

import numpy as np
import pytest
from mf_fixtures import make_model

from mxnet_mf.recommender import Recommender, top_k


def test_mf_rating_is_dot_product_plus_biases():
    model = make_model("mf")
    # user 10 (index 0) x item 300 (index 2): <(1,0),(2,0.1)> + 0.1 - 0.2 + 3
    assert model.predict(np.array([0]), np.array([2]))[0] == pytest.approx(4.9)


def test_ratings_are_clipped_and_unknown_ids_fall_back_to_biases():
    model = make_model("mf")
    assert model.predict(np.array([1]), np.array([3]))[0] == pytest.approx(3 - 1 - 0.1 + 0.1)
    assert model.predict(np.array([-1]), np.array([0]))[0] == pytest.approx(3.2)  # global + item bias
    assert model.predict(np.array([-1]), np.array([-1]))[0] == pytest.approx(3.0)


def test_deep_scores_of_all_items_match_pairwise_scores():
    model = make_model("deep")
    users = np.array([0, 1, 2])
    every = model.score_all_items(users)
    for u in users:
        assert np.allclose(every[u], model.score(np.full(4, u), np.arange(4)), atol=1e-5)


def test_recommend_excludes_rated_items_on_request():
    model = make_model("mf")
    items, _ = model.recommend(np.array([0, 0]), 4, np.array([True, False]))
    assert 0 not in items[0][:3].tolist() and items[0][3] in (0,)  # rated item last, at -inf
    assert items[1][0] == 2  # item 300 is user 10's best unrated-or-not item


def test_similar_finds_the_item_pointing_the_same_way():
    items, similarity = make_model("mf").similar(np.array([0]), 2)
    assert items[0][0] == 2 and similarity[0][0] == pytest.approx(0.99875, abs=1e-4)


def test_top_k_orders_descending():
    items, scores = top_k(np.array([[0.1, 0.9, 0.5, 0.7]]), 3)
    assert items.tolist() == [[1, 3, 2]] and scores.tolist() == [[0.9, 0.7, 0.5]]


def test_save_and_load_round_trip(tmp_path):
    model = make_model("deep")
    model.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    users, items = np.array([0, 1, 2]), np.array([3, 2, 1])
    assert np.allclose(loaded.predict(users, items), model.predict(users, items))
    assert loaded.title(0) == "A (1990)" and loaded.title(2) is None
    assert loaded.popular(1)[0].tolist() == [0]  # most rated, then highest bias
