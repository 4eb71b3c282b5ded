"""Reading interactions: MovieLens ratings.csv / ratings.dat / u.data, and the course's train.npy layout.

Pure numpy (no pandas in the image); numpy's C loadtxt reads ML-1M in about a second.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from byoc_runtime.errors import DataError

# Names the MovieLens releases use; anything else with these suffixes is sniffed the same way.
RATING_FILE_NAMES = ("ratings.csv", "ratings.dat", "u.data", "ua.base", "u1.base")
RATING_SUFFIXES = (".csv", ".dat", ".data", ".tsv", ".base")


@dataclass(frozen=True)
class Ratings:
    """Explicit ratings as given: raw ids (any integers), rating and timestamp per row."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


def parse_ratings(text: bytes, name: str = "ratings") -> Ratings:
    """One MovieLens file: `::`-separated (ratings.dat), tab-separated (u.data) or CSV with an optional header
    (ratings.csv). Columns: user, item, rating[, timestamp]; without timestamps the file order stands in."""
    body = text.decode("utf-8", "replace").replace("\r", "").strip()
    if not body:
        raise DataError(f"{name} is empty")
    first = body.partition("\n")[0]
    separator = "::" if "::" in first else "\t" if "\t" in first else ","
    if not first.split(separator)[0].strip().lstrip("-").isdigit():
        body = body.partition("\n")[2]  # a header row such as userId,movieId,rating,timestamp
    if separator == "::":
        body = body.replace("::", ",")  # loadtxt takes one-character delimiters
        separator = ","
    try:
        table = np.loadtxt(io.StringIO(body), delimiter=separator, dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise DataError(
            f"{name} is not a MovieLens ratings file (user, item, rating, timestamp per line, separated by "
            f"'::', tab or comma): {err}"
        ) from None
    if table.shape[0] == 0 or table.shape[1] < 3:
        raise DataError(f"{name} needs at least 3 columns (user, item, rating); it has {table.shape[1]}")
    timestamps = table[:, 3] if table.shape[1] > 3 else np.arange(len(table), dtype=np.float64)
    return Ratings(table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2], timestamps)


def find_ratings_file(directory: Path) -> Path | None:
    """The MovieLens ratings file in a channel directory, by its release name first, then by suffix."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    for name in RATING_FILE_NAMES:
        for path in files:
            if path.name == name:
                return path
    candidates = [p for p in files if p.suffix in RATING_SUFFIXES]
    return candidates[0] if len(candidates) == 1 else None


def load_labelled(path: Path) -> np.ndarray:
    """The course's layout: an (n, 3) array of user index, item index, label (1 = interaction, 0 = negative)."""
    try:
        table = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{path.name} is not a numpy .npy file: {err}") from None
    if table.ndim != 2 or table.shape[1] != 3:
        raise DataError(f"{path.name} must be an (n, 3) array of user, item, label; its shape is {list(table.shape)}")
    if len(table) == 0:
        raise DataError(f"{path.name} has no rows")
    if not np.isin(table[:, 2], (0, 1)).all() or (table[:, :2] < 0).any():
        raise DataError(f"{path.name}: users and items must be indices >= 0 and labels 0 or 1")
    return table.astype(np.int64)
