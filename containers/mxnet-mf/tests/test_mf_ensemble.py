"""model=mf's default ensemble: the MF and the I-AutoRec folded into one biased MF (ensemble.blend)."""

from dataclasses import replace

import numpy as np
import pytest
from mf_fixtures import make_model

from mxnet_mf.ensemble import AutoRecModel, blend
from mxnet_mf.recommender import Recommender

RNG = np.random.default_rng(3)
AUTOREC = AutoRecModel(
    item_codes=RNG.uniform(size=(4, 5)).astype(np.float32),  # sigmoid codes lie in (0, 1)
    user_weights=RNG.normal(size=(3, 5)).astype(np.float32),
    user_bias=np.array([3.5, 2.5, 4.0], dtype=np.float32),
)


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5, 1.0])
def test_the_blended_model_scores_the_weighted_average_of_its_members(weight):
    mf = make_model("mf")
    blended = replace(mf, params=blend(mf.params, AUTOREC, weight))
    users, items = np.repeat(np.arange(3), 4), np.tile(np.arange(4), 3)
    expected = weight * mf.score(users, items) + (1 - weight) * AUTOREC.predict(users, items)
    np.testing.assert_allclose(blended.score(users, items), expected, rtol=1e-5, atol=1e-5)
    # top-k and all-items scoring go through the same factors
    np.testing.assert_allclose(blended.score_all_items(np.arange(3)).ravel(), expected, rtol=1e-5, atol=1e-5)


def test_the_blended_model_saves_and_loads_as_a_plain_mf(tmp_path):
    mf = make_model("mf")
    blended = replace(mf, params=blend(mf.params, AUTOREC, 0.5))
    blended.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    assert loaded.kind == "mf" and loaded.user_embedding.shape == (3, 2 + 5)
    np.testing.assert_allclose(loaded.predict(np.array([0, 2]), np.array([1, 3])), blended.predict([0, 2], [1, 3]))
    assert loaded.user_embedding.dtype == np.float32


def test_an_unseen_item_falls_back_to_the_weighted_biases():
    mf = make_model("mf")
    blended = replace(mf, params=blend(mf.params, AUTOREC, 0.5))
    fallback = blended.predict(np.array([1]), np.array([-1]))[0]
    # the I-AutoRec's half: its prediction for the average item code
    average_item = 2.5 + AUTOREC.user_weights[1] @ AUTOREC.item_codes.mean(axis=0)
    assert fallback == pytest.approx(0.5 * (3.0 - 0.1) + 0.5 * average_item, abs=1e-5)


def test_similar_items_are_the_mf_s_when_the_autorec_has_no_weight():
    mf = make_model("mf")
    blended = replace(mf, params=blend(mf.params, AUTOREC, 1.0))
    items = np.arange(4)
    assert blended.similar(items, 2)[0].tolist() == mf.similar(items, 2)[0].tolist()
