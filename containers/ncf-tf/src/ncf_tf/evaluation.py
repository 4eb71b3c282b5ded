"""Ranking and classification metrics in numpy: HR@K and NDCG@K (the NCF paper's leave-one-out protocol),
AUC and accuracy on a labelled set, and the popularity baseline that a personalised model must beat."""

from __future__ import annotations

import numpy as np


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
