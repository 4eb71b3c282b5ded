"""Ranking and classification metrics in numpy: HR@K and NDCG@K (the NCF paper's leave-one-out protocol),
AUC and accuracy on a labelled set, and the popularity baseline that a personalised model must beat.

The leave-latest-out protocol, reproducible outside the job (the same split and candidates as the job's own
evaluation with `holdout=1` and the same `seed`), scored through any callable, e.g. an endpoint:

    protocol = evaluation.leave_latest_out("ml-latest-small/ratings.csv")   # or ML-100K's u.data
    scores = evaluation.score_candidates(protocol, lambda user_ids, item_ids: ...)  # raw MovieLens ids
    evaluation.ranking_metrics(scores, k=10)                                # {"hr_at_10": ..., "ndcg_at_10": ...}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import prep
from .ratings import Ratings, find_ratings_file, parse_ratings


def ranks(scores: np.ndarray) -> np.ndarray:
    """Rank (0 = best) of column 0 among each row's candidates. Ties count against the held-out item, so a
    model that scores everything equally gets no credit."""
    return (scores[:, 1:] >= scores[:, :1]).sum(axis=1)


def hit_ratio(scores: np.ndarray, k: int = 10) -> float:
    return float(np.mean(ranks(scores) < k)) if len(scores) else float("nan")


def ndcg(scores: np.ndarray, k: int = 10) -> float:
    if not len(scores):
        return float("nan")
    r = ranks(scores)
    return float(np.mean(np.where(r < k, np.log(2) / np.log(r + 2.0), 0.0)))


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum statistic (ties get their average rank)."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    rank = np.empty(len(scores), np.float64)
    rank[order] = np.arange(1, len(scores) + 1)
    # average ranks over ties
    unique, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    rank[order] = np.repeat(average, counts)
    return float((rank[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def accuracy(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((np.asarray(scores) >= threshold) == np.asarray(labels).astype(bool)))


def popularity_scores(train_items: np.ndarray, n_items: int, candidates: np.ndarray) -> np.ndarray:
    """The non-personalised baseline: an item's score is how often it was interacted with in training."""
    counts = np.bincount(train_items, minlength=n_items).astype(np.float64)
    return counts[candidates]


@dataclass(frozen=True)
class LeaveLatestOut:
    """Each user's latest interaction held out (`data.test_*`, never in `data.train_*`), and per held-out item
    the candidates: the item first, then `negatives` items the user never rated (`evalset`)."""

    data: prep.Interactions
    evalset: prep.EvalSet

    @property
    def user_ids(self) -> np.ndarray:
        """(n,) raw id of each evaluated user."""
        return self.data.user_ids[self.evalset.users]

    @property
    def candidate_ids(self) -> np.ndarray:
        """(n, 1 + negatives) raw item ids; column 0 is the held-out item."""
        return self.data.item_ids[self.evalset.candidates]

    def popularity_scores(self) -> np.ndarray:
        """The baseline on the same candidates: training interactions per item."""
        return popularity_scores(self.data.train_items, self.data.n_items, self.evalset.candidates)


def leave_latest_out(
    ratings: str | Path | bytes | Ratings, seed: int = 0, negatives: int = prep.EVAL_NEGATIVES, min_rating: float = 0.0
) -> LeaveLatestOut:
    """The split and candidates from a MovieLens ratings file (ml-latest-small's `ratings.csv`, ML-100K's
    `u.data`, ML-1M's `ratings.dat`, or a folder holding one), its bytes, or parsed Ratings: per user the latest
    rating by timestamp (of equal timestamps, the larger item id) is held out (users with a single rating are not
    evaluated), and `negatives` items the user never rated are drawn with `seed`, as the training job does with
    `holdout=1`."""
    if not isinstance(ratings, Ratings):
        if isinstance(ratings, bytes):
            ratings = parse_ratings(ratings, "ratings")
        else:
            path = Path(ratings)
            path = (find_ratings_file(path) or path) if path.is_dir() else path
            ratings = parse_ratings(path.read_bytes(), path.name)
    data = prep.from_ratings(ratings, holdout=1, min_rating=min_rating)
    evalset = prep.eval_set(data, seed, min(negatives, max(1, data.n_items - 1)))
    if evalset is None:
        raise ValueError("no user has more than one rating: nothing to hold out")
    return LeaveLatestOut(data, evalset)


def score_candidates(
    protocol: LeaveLatestOut,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    users_per_call: int = 50,
    raw_ids: bool = True,
) -> np.ndarray:
    """(n, 1 + negatives) scores of every user's candidates from `score(users, items)` (equal-length arrays of
    raw ids, or of the model's indices with raw_ids=False; one score per pair), called for `users_per_call`
    users' candidates at a time."""
    users = protocol.user_ids if raw_ids else protocol.evalset.users
    candidates = protocol.candidate_ids if raw_ids else protocol.evalset.candidates
    width = candidates.shape[1]
    out = []
    for start in range(0, len(users), users_per_call):
        block = candidates[start : start + users_per_call]
        scores = np.asarray(
            score(np.repeat(users[start : start + users_per_call], width), block.ravel()), dtype=np.float64
        ).reshape(-1)
        if scores.size != block.size:
            raise ValueError(f"the scorer answered {scores.size} scores for {block.size} pairs")
        out.append(scores.reshape(block.shape))
    return np.concatenate(out) if out else np.empty((0, width))


def ranking_metrics(scores: np.ndarray, k: int = 10) -> dict[str, float]:
    """HR@K and NDCG@K of (n, candidates) scores whose column 0 is the held-out item."""
    return {f"hr_at_{k}": hit_ratio(scores, k), f"ndcg_at_{k}": ndcg(scores, k)}
