"""HR@K, NDCG@K (ties count against the model), AUC against a brute-force count."""

import numpy as np
import pytest

from ncf_tf import evaluation


def test_hit_ratio_and_ndcg_by_hand():
    scores = np.array([[0.9, 0.1, 0.2], [0.2, 0.5, 0.1], [0.1, 0.5, 0.6]])  # ranks 0, 1, 2
    assert evaluation.hit_ratio(scores, k=2) == pytest.approx(2 / 3)
    expected = (1.0 + np.log(2) / np.log(3) + 0.0) / 3
    assert evaluation.ndcg(scores, k=2) == pytest.approx(expected)


def test_constant_scores_get_no_credit():
    assert evaluation.hit_ratio(np.zeros((5, 101)), k=10) == 0.0


def test_auc_matches_pair_counting():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + labels * 0.3, 1)  # rounded: plenty of ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert evaluation.auc(labels, scores) == pytest.approx(brute)
    assert evaluation.accuracy([1, 0, 1], [0.9, 0.2, 0.4]) == pytest.approx(2 / 3)


def test_popularity_scores_count_training_interactions():
    scores = evaluation.popularity_scores(np.array([2, 2, 1]), 4, np.array([[2, 1, 0, 3]]))
    assert scores.tolist() == [[2.0, 1.0, 0.0, 0.0]]
