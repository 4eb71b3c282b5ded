"""MovieLens ratings -> FM's recommender input: one sparse row per rating, one-hot user + one-hot item.

Reads the public formats: `u.data` / `ua.base` / `ua.test` (tab-separated user, item, rating, timestamp),
`ratings.dat` (`::`-separated) and `ratings.csv` (header userId,movieId,rating,timestamp). Columns
0..n_users-1 are users, n_users..n_users+n_items-1 items, so feature_dim = n_users + n_items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from byoc_runtime.codecs.recordio_protobuf import CsrMatrix


@dataclass(frozen=True)
class Ratings:
    users: np.ndarray  # raw ids (int64)
    items: np.ndarray
    ratings: np.ndarray  # float32
    timestamps: np.ndarray  # int64 (0 where the file has none)

    def __len__(self) -> int:
        return int(self.users.size)

    def subset(self, rows: np.ndarray) -> Ratings:
        return Ratings(self.users[rows], self.items[rows], self.ratings[rows], self.timestamps[rows])


def _parse_lines(lines: list[str], separator: str | None) -> Ratings:
    table = [line.split(separator) for line in lines if line.strip()]
    if not table or min(len(row) for row in table) < 3:
        raise ValueError("each rating line needs user, item and rating")
    users = np.array([int(row[0]) for row in table], dtype=np.int64)
    items = np.array([int(row[1]) for row in table], dtype=np.int64)
    ratings = np.array([float(row[2]) for row in table], dtype=np.float32)
    stamps = np.array([int(float(row[3])) if len(row) > 3 else 0 for row in table], dtype=np.int64)
    return Ratings(users, items, ratings, stamps)


def read_ratings(path: str | Path) -> Ratings:
    """Ratings from any of the MovieLens rating formats (detected from the content)."""
    lines = Path(path).read_text(encoding="latin-1").splitlines()
    if not lines:
        raise ValueError(f"{path} is empty")
    first = lines[0]
    if "::" in first:
        return _parse_lines([line.replace("::", "\t") for line in lines], "\t")
    if "," in first:
        header = first.lower().startswith("userid") or not first.split(",")[0].strip().isdigit()
        return _parse_lines(lines[1:] if header else lines, ",")
    return _parse_lines(lines, None)  # whitespace: tab-separated u.data / ua.base


@dataclass(frozen=True)
class OneHotEncoding:
    """Column of every user and item id; unknown ids at prediction time have no column (all-zero part)."""

    user_ids: np.ndarray  # sorted raw user ids; column = position
    item_ids: np.ndarray  # sorted raw item ids; column = n_users + position

    @classmethod
    def fit(cls, ratings: Ratings) -> OneHotEncoding:
        return cls(np.unique(ratings.users), np.unique(ratings.items))

    @property
    def feature_dim(self) -> int:
        return int(self.user_ids.size + self.item_ids.size)

    def _columns(self, known: np.ndarray, ids: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
        position = np.searchsorted(known, ids)
        found = (position < known.size) & (known[np.minimum(position, known.size - 1)] == ids)
        return position + offset, found

    def transform(self, users: np.ndarray, items: np.ndarray) -> CsrMatrix:
        """One row per (user, item) pair: a 1 in the user's column and a 1 in the item's column."""
        user_cols, user_found = self._columns(self.user_ids, np.asarray(users), 0)
        item_cols, item_found = self._columns(self.item_ids, np.asarray(items), self.user_ids.size)
        columns = np.stack([user_cols, item_cols], axis=1)
        present = np.stack([user_found, item_found], axis=1)
        indptr = np.zeros(columns.shape[0] + 1, np.int64)
        np.cumsum(present.sum(axis=1), out=indptr[1:])
        indices = columns[present].astype(np.int64)
        return CsrMatrix(indptr, indices, np.ones(indices.size, np.float32), self.feature_dim)

    def to_json(self) -> str:
        return json.dumps({"user_ids": self.user_ids.tolist(), "item_ids": self.item_ids.tolist()})

    @classmethod
    def from_json(cls, text: str) -> OneHotEncoding:
        data = json.loads(text)
        return cls(np.asarray(data["user_ids"], np.int64), np.asarray(data["item_ids"], np.int64))


def synthetic(users: int = 200, items: int = 150, count: int = 8000, rank: int = 3, seed: int = 0) -> Ratings:
    """MovieLens-like ratings for tests and demos (never redistributed MovieLens data): integer stars 1..5
    from user and item biases plus a low-rank user x item affinity, the structure an FM recovers."""
    rng = np.random.default_rng(seed)
    user_vectors, item_vectors = rng.normal(size=(users, rank)), rng.normal(size=(items, rank))
    user_bias, item_bias = 0.4 * rng.normal(size=users), 0.6 * rng.normal(size=items)
    pairs = rng.choice(users * items, size=min(count, users * items), replace=False)
    u, i = pairs // items, pairs % items
    affinity = (user_vectors[u] * item_vectors[i]).sum(axis=1) / np.sqrt(rank)
    stars = np.clip(np.rint(3.5 + user_bias[u] + item_bias[i] + affinity), 1, 5)
    stamps = 874_965_758 + rng.integers(0, 10**7, size=u.size)
    return Ratings(u + 1, i + 1, stars.astype(np.float32), stamps.astype(np.int64))  # MovieLens ids start at 1


def write_u_data(ratings: Ratings, path: str | Path) -> Path:
    """Ratings in ML-100K's u.data format: user, item, rating, timestamp, tab-separated."""
    path = Path(path)
    rows = zip(ratings.users, ratings.items, ratings.ratings, ratings.timestamps, strict=True)
    path.write_text("".join(f"{u}\t{i}\t{int(r)}\t{t}\n" for u, i, r, t in rows))
    return path


def split(ratings: Ratings, test_fraction: float = 0.1, seed: int = 0) -> tuple[Ratings, Ratings]:
    """A random train/test split of the ratings."""
    order = np.random.default_rng(seed).permutation(len(ratings))
    cut = int(round(len(ratings) * (1 - test_fraction)))
    return ratings.subset(np.sort(order[:cut])), ratings.subset(np.sort(order[cut:]))


def labels_of(ratings: Ratings, binary_threshold: float | None = None) -> np.ndarray:
    """Ratings as regression targets, or 1/0 for rating >= threshold (the binary-classifier variant)."""
    if binary_threshold is None:
        return ratings.ratings.astype(np.float32)
    return (ratings.ratings >= binary_threshold).astype(np.float32)
