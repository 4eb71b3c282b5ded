"""The leave-latest-out protocol of ncf_tf.evaluation on generated ratings with a planted structure: the split,
the candidates (the job's own, seeded), scoring through a callable, and HR/NDCG of an oracle and a random scorer."""

from __future__ import annotations

import numpy as np
import pytest

from ncf_tf import evaluation, prep, synthetic
from ncf_tf.ratings import parse_ratings


@pytest.fixture(scope="module")
def rows():
    return synthetic.planted_ratings(n_users=1000, n_items=300, per_user=12, groups=6, seed=3)


@pytest.fixture(scope="module")
def protocol(rows):
    return evaluation.leave_latest_out(parse_ratings(synthetic.write(rows, _tmp(), "u.data").read_bytes()))


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="ncf-protocol-"))


def latest_by_user(rows: np.ndarray) -> dict[int, int]:
    """Each user's item of the largest timestamp, straight from the rows."""
    mine = {int(u): rows[rows[:, 0] == u] for u in np.unique(rows[:, 0])}
    return {u: int(r[np.argmax(r[:, 3]), 1]) for u, r in mine.items()}


def test_each_users_latest_is_held_out_and_never_trained_on(rows, protocol):
    latest = latest_by_user(rows)
    assert protocol.user_ids.tolist() == sorted(latest)
    assert protocol.candidate_ids[:, 0].tolist() == [latest[u] for u in protocol.user_ids.tolist()]
    data = protocol.data
    trained = set(zip(data.user_ids[data.train_users].tolist(), data.item_ids[data.train_items].tolist(), strict=True))
    assert not any((u, i) in trained for u, i in latest.items())
    assert len(trained) + len(latest) == len(rows)


def test_negatives_are_items_the_user_never_rated(rows, protocol):
    rated = {(int(u), int(i)) for u, i in rows[:, :2]}
    assert protocol.candidate_ids.shape == (1000, 1 + prep.EVAL_NEGATIVES)
    for user, candidates in zip(protocol.user_ids.tolist(), protocol.candidate_ids[:, 1:].tolist(), strict=True):
        assert not any((user, item) in rated for item in candidates)


def test_same_candidates_from_every_format_and_as_the_job_draws_them(tmp_path, rows, protocol):
    for fmt in ("ratings.csv", "ratings.dat"):
        other = evaluation.leave_latest_out(synthetic.write(rows, tmp_path / fmt.replace(".", "_"), fmt))
        assert np.array_equal(other.candidate_ids, protocol.candidate_ids)
    folder = evaluation.leave_latest_out(tmp_path / "ratings_csv")  # a folder holding the file
    assert np.array_equal(folder.candidate_ids, protocol.candidate_ids)
    job = prep.eval_set(prep.from_ratings(parse_ratings(synthetic.write(rows, tmp_path, "u.data").read_bytes()), 1), 0)
    assert np.array_equal(job.candidates, protocol.evalset.candidates)
    reseeded = evaluation.leave_latest_out(tmp_path / "u.data", seed=1)
    assert np.array_equal(reseeded.candidate_ids[:, 0], protocol.candidate_ids[:, 0])
    assert not np.array_equal(reseeded.candidate_ids, protocol.candidate_ids)


def test_ties_hold_out_the_larger_item_id():
    text = b"userId,movieId,rating,timestamp\n1,7,4,100\n1,9,3,200\n1,8,5,200\n2,10,4,100\n2,11,4,300\n"
    protocol = evaluation.leave_latest_out(text)
    assert protocol.user_ids.tolist() == [1, 2] and protocol.candidate_ids[:, 0].tolist() == [9, 11]
    assert set(protocol.candidate_ids[0, 1:].tolist()) <= {10, 11}  # the items user 1 never rated


def test_oracle_scorer_gets_every_hit_and_random_scorer_about_k_over_candidates(rows, protocol):
    latest = latest_by_user(rows)
    calls = []

    def oracle(users, items):
        calls.append(len(users))
        return np.array([float(latest[u] == i) for u, i in zip(users.tolist(), items.tolist(), strict=True)])

    scores = evaluation.score_candidates(protocol, oracle, users_per_call=64)
    assert scores.shape == (1000, 101) and max(calls) == 64 * 101 and sum(calls) == 1000 * 101
    assert evaluation.ranking_metrics(scores, k=10) == {"hr_at_10": 1.0, "ndcg_at_10": 1.0}

    rng = np.random.default_rng(0)
    hits = [
        evaluation.ranking_metrics(evaluation.score_candidates(protocol, lambda u, i: rng.random(len(u))))["hr_at_10"]
        for _ in range(5)
    ]
    assert np.mean(hits) == pytest.approx(10 / 101, abs=0.02)


def test_popularity_and_index_scoring_on_the_planted_groups(protocol):
    popularity = evaluation.ranking_metrics(protocol.popularity_scores())
    assert 10 / 101 < popularity["hr_at_10"] < 1.0
    # Scoring by model indices: a scorer that knows each user's group beats popularity on planted tastes.
    data = protocol.data
    together = np.zeros((data.n_users, data.n_items))
    np.add.at(together, (data.train_users, data.train_items), 1.0)
    co = together.T @ together  # item-item co-occurrence in training
    profile = together @ co  # user x item affinity

    scores = evaluation.score_candidates(protocol, lambda u, i: profile[u, i], raw_ids=False)
    assert evaluation.ranking_metrics(scores)["hr_at_10"] > popularity["hr_at_10"]


def test_a_scorer_answering_the_wrong_count_is_an_error(protocol):
    with pytest.raises(ValueError, match="scores for"):
        evaluation.score_candidates(protocol, lambda u, i: np.zeros(3))
