"""Generated MovieLens-format ratings with planted preferences, for tests, the demo and the benchmark (no
MovieLens file is redistributed). Users and items belong to taste groups; a user rates mostly items of their own
group, and a few popular items from everywhere, so a personalised model beats the popularity baseline clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMATS = ("u.data", "ratings.dat", "ratings.csv")


def planted_ratings(n_users: int = 200, n_items: int = 300, per_user: int = 30, groups: int = 10,
                    in_group: float = 0.85, seed: int = 0) -> np.ndarray:
    """(n, 4) rows of user id, item id, rating, timestamp; ids start at 1 like MovieLens."""
    rng = np.random.default_rng(seed)
    user_group = rng.integers(0, groups, n_users)
    item_group = rng.integers(0, groups, n_items)
    popularity = rng.zipf(1.5, n_items).astype(np.float64)
    popularity /= popularity.sum()
    rows = []
    for user in range(n_users):
        own = np.flatnonzero(item_group == user_group[user])
        n_own = min(len(own), int(round(per_user * in_group)))
        mine = rng.choice(own, n_own, replace=False)
        others = np.setdiff1d(np.arange(n_items), mine)
        p = popularity[others] / popularity[others].sum()
        extra = rng.choice(others, min(len(others), per_user - n_own), replace=False, p=p)
        items = np.r_[mine, extra]
        ratings = np.where(np.isin(items, own), rng.integers(4, 6, len(items)), rng.integers(1, 4, len(items)))
        times = 978_300_000 + rng.permutation(len(items)) * 60 + user
        rows.append(np.c_[np.full(len(items), user + 1), items + 1, ratings, times])
    return np.vstack(rows).astype(np.int64)


def write(rows: np.ndarray, directory: Path, fmt: str = "u.data") -> Path:
    """In one of the MovieLens layouts: u.data (tab), ratings.dat ('::'), ratings.csv (header, comma)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / fmt
    if fmt == "u.data":
        text = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)
    elif fmt == "ratings.dat":
        text = "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows)
    elif fmt == "ratings.csv":
        text = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r}.0,{t}\n" for u, i, r, t in rows)
    else:
        raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")
    path.write_text(text)
    return path
