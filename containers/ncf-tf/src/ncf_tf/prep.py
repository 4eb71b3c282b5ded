"""Data preparation: implicit feedback from ratings, a per-user hold-out of the latest interactions, negative
sampling that never picks an item the user rated, and the evaluation candidates of the NCF paper (each held-out
item ranked against 100 sampled items the user did not rate).

CLI (the course's layout: train.npy / test.npy of user, item, label rows, plus the id mappings):
    python -m ncf_tf.prep --input ratings.dat --output prepared/ [--holdout 10] [--n-neg 5]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from byoc_runtime.errors import DataError
from byoc_runtime.training_data import check_file_kind, directory_files, read_head

from .ratings import Ratings, find_ratings_file, load_labelled, parse_ratings

EVAL_NEGATIVES = 100  # the paper's protocol: rank the held-out item among 100 unobserved ones


@dataclass(frozen=True)
class Interactions:
    """Positive (user, item) index pairs split into train and held-out test, with the raw id of every index."""

    train_users: np.ndarray
    train_items: np.ndarray
    test_users: np.ndarray
    test_items: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    test_labelled: np.ndarray | None = None  # (n, 3) user, item, label when given (course's test.npy)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def known_keys(self) -> np.ndarray:
        """Sorted user * n_items + item of every rated pair (train and test): what negatives must avoid."""
        keys = np.concatenate([pair_keys(self.train_users, self.train_items, self.n_items),
                               pair_keys(self.test_users, self.test_items, self.n_items)])
        return np.unique(keys)


def pair_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    return users.astype(np.int64) * n_items + items.astype(np.int64)


def from_ratings(ratings: Ratings, holdout: int, min_rating: float = 0.0) -> Interactions:
    """Every rating >= min_rating is a positive; per user the `holdout` latest go to the test set (users with
    no more than `holdout` positives stay entirely in training, so every test user has a training history)."""
    keep = ratings.ratings >= min_rating
    if not keep.any():
        raise DataError(f"no rating is >= min_rating={min_rating}")
    user_ids, users = np.unique(ratings.users[keep], return_inverse=True)
    item_ids, items = np.unique(ratings.items[keep], return_inverse=True)
    users, items, times = users.astype(np.int32), items.astype(np.int32), ratings.timestamps[keep]
    # A pair rated twice counts once (its latest rating).
    order = np.lexsort((times, items, users))
    users, items, times = users[order], items[order], times[order]
    last_of_pair = np.r_[(users[1:] != users[:-1]) | (items[1:] != items[:-1]), True]
    users, items, times = users[last_of_pair], items[last_of_pair], times[last_of_pair]
    # Rank each user's interactions by time (stable on ties: file order of the lexsort).
    order = np.lexsort((times, users))
    users, items = users[order], items[order]
    counts = np.bincount(users, minlength=len(user_ids))
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    position = np.arange(len(users)) - starts[users]
    held = (position >= counts[users] - holdout) & (counts[users] > holdout)
    return Interactions(users[~held], items[~held], users[held], items[held], user_ids, item_ids)


def from_labelled(train: np.ndarray, test: np.ndarray | None) -> Interactions:
    """The course's train.npy/test.npy: indices are already contiguous; positives are the label-1 rows."""
    tables = [train] + ([test] if test is not None else [])
    n_users = int(max(t[:, 0].max() for t in tables)) + 1
    n_items = int(max(t[:, 1].max() for t in tables)) + 1
    positives = train[train[:, 2] == 1]
    if len(positives) == 0:
        raise DataError("train.npy has no label-1 rows (interactions)")
    test_pos = test[test[:, 2] == 1] if test is not None else np.empty((0, 3), np.int64)
    return Interactions(
        positives[:, 0].astype(np.int32), positives[:, 1].astype(np.int32),
        test_pos[:, 0].astype(np.int32), test_pos[:, 1].astype(np.int32),
        np.arange(n_users), np.arange(n_items), test,
    )


def sample_negatives(users: np.ndarray, n_items: int, known: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly drawn unrated item per entry of `users` (vectorised rejection sampling)."""
    items = rng.integers(0, n_items, size=len(users), dtype=np.int64)
    bad = _is_known(users, items, n_items, known)
    for _ in range(1000):
        if not bad.any():
            return items.astype(np.int32)
        redraw = rng.integers(0, n_items, size=int(bad.sum()), dtype=np.int64)
        items[bad] = redraw
        bad[bad] = _is_known(users[bad], redraw, n_items, known)
    raise DataError("could not sample unrated items: some users have rated (nearly) every item")


def _is_known(users: np.ndarray, items: np.ndarray, n_items: int, known: np.ndarray) -> np.ndarray:
    keys = pair_keys(users, items, n_items)
    where = np.minimum(np.searchsorted(known, keys), len(known) - 1)
    return known[where] == keys


def with_negatives(users: np.ndarray, items: np.ndarray, n_neg: int, n_items: int, known: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positives followed by n_neg sampled negatives each: (users, items, labels)."""
    neg_users = np.repeat(users, n_neg)
    neg_items = sample_negatives(neg_users, n_items, known, rng)
    labels = np.r_[np.ones(len(users), np.float32), np.zeros(len(neg_users), np.float32)]
    return np.r_[users, neg_users].astype(np.int32), np.r_[items, neg_items].astype(np.int32), labels


def users_with_unrated_items(data: Interactions, known: np.ndarray) -> np.ndarray:
    """Mask over training positives: False for users who rated every item (no negative exists for them)."""
    rated = np.bincount((known // data.n_items).astype(np.int64), minlength=data.n_users)
    return rated[data.train_users] < data.n_items


@dataclass(frozen=True)
class EvalSet:
    """Per held-out item: the item first, then EVAL_NEGATIVES unrated items; and a labelled set for AUC."""

    users: np.ndarray  # (n,)
    candidates: np.ndarray  # (n, 1 + EVAL_NEGATIVES); column 0 is the held-out item
    labelled: np.ndarray  # (m, 3) user, item, label


def eval_set(data: Interactions, seed: int = 0, negatives: int = EVAL_NEGATIVES) -> EvalSet | None:
    if len(data.test_users) == 0:
        return None
    rng = np.random.default_rng(seed)
    known = data.known_keys()
    neg = sample_negatives(np.repeat(data.test_users, negatives), data.n_items, known, rng)
    candidates = np.c_[data.test_items, neg.reshape(-1, negatives)].astype(np.int32)
    if data.test_labelled is not None:
        labelled = data.test_labelled
    else:
        users = np.repeat(data.test_users, 1 + negatives)
        labels = np.tile(np.r_[1, np.zeros(negatives, np.int64)], len(data.test_users))
        labelled = np.c_[users, candidates.ravel(), labels].astype(np.int64)
    return EvalSet(data.test_users, candidates, labelled)


READS = ("ncf-tf reads a MovieLens ratings file (ratings.csv, ratings.dat, u.data) or the course's train.npy: "
         "declare text/csv (ratings), application/x-npy (train.npy) or no ContentType")


def load_channel(directory: Path, holdout: int, min_rating: float, test_dir: Path | None = None, *,
                 channel: str = "training", content_type: str | None = None) -> Interactions:
    """A channel holding a MovieLens ratings file, or the course's train.npy (+ test.npy here or in test_dir).
    Errors name the channel, the file (relative to the channel) and the line or row."""
    files = directory_files(directory, channel)

    def checked(path: Path) -> str:
        """`Channel 'training': ratings.dat`, once the file's bytes agree with the declared ContentType."""
        root, name, declared = (directory, channel, content_type) if path.is_relative_to(directory) else \
            (test_dir, "test", None)
        relative = str(path.relative_to(root))
        check_file_kind(name, declared, relative, read_head(path), ("npy", "text"), READS)
        return f"Channel '{name}': {relative}"

    train_npy = _first(directory, "train.npy")
    if train_npy is not None:
        test_npy = _first(directory, "test.npy") or (_first(test_dir, "test.npy") if test_dir else None)
        test = load_labelled(test_npy, checked(test_npy)) if test_npy else None
        return from_labelled(load_labelled(train_npy, checked(train_npy)), test)
    ratings_file = find_ratings_file(directory)
    if ratings_file is None:
        listing = ", ".join(str(p.relative_to(directory)) for p in files[:10])
        raise DataError(
            f"Channel '{channel}' holds no MovieLens ratings file (ratings.csv, ratings.dat, u.data) and no "
            f"train.npy; found: {listing}"
        )
    return from_ratings(parse_ratings(ratings_file.read_bytes(), checked(ratings_file)), holdout, min_rating)


def _first(directory: Path | None, name: str) -> Path | None:
    if directory is None or not directory.is_dir():
        return None
    return next(iter(sorted(directory.rglob(name))), None)


def write_course_layout(data: Interactions, output: Path, n_neg: int, seed: int = 0) -> dict[str, int]:
    """train.npy (positives + n_neg negatives each), test.npy (held-out positives + 100 negatives each),
    mappings.npz (raw ids of the indices)."""
    rng = np.random.default_rng(seed)
    known = data.known_keys()
    mask = users_with_unrated_items(data, known)
    users, items, labels = with_negatives(data.train_users[mask], data.train_items[mask], n_neg, data.n_items,
                                          known, rng)
    output.mkdir(parents=True, exist_ok=True)
    np.save(output / "train.npy", np.c_[users, items, labels].astype(np.int64))
    evaluation = eval_set(data, seed)
    test = evaluation.labelled if evaluation is not None else np.empty((0, 3), np.int64)
    np.save(output / "test.npy", test)
    np.savez(output / "mappings.npz", user_ids=data.user_ids, item_ids=data.item_ids)
    return {"users": data.n_users, "items": data.n_items, "train_rows": len(users), "test_rows": len(test)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MovieLens ratings -> the course's train.npy/test.npy layout")
    parser.add_argument("--input", required=True, type=Path, help="ratings.csv, ratings.dat, u.data or a directory")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--holdout", type=int, default=10, help="latest ratings held out per user (1 = leave-one-out)")
    parser.add_argument("--n-neg", type=int, default=5, help="negatives per training positive")
    parser.add_argument("--min-rating", type=float, default=0.0, help="ratings below this are not interactions")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.holdout < 1 or args.n_neg < 1:
            raise DataError("--holdout and --n-neg must be at least 1")
        path = args.input
        if path.is_dir():
            path = find_ratings_file(path) or path
        if not path.is_file():
            raise DataError(f"no ratings file at {args.input}")
        data = from_ratings(parse_ratings(path.read_bytes(), path.name), args.holdout, args.min_rating)
        summary = write_course_layout(data, args.output, args.n_neg, args.seed)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
