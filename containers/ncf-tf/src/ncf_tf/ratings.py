"""Reading interactions: MovieLens ratings.csv / ratings.dat / u.data, and the course's train.npy layout.

Pure numpy (no pandas in the image); numpy's C loadtxt reads ML-1M in about a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from byoc_runtime.errors import DataError
from byoc_runtime.training_data import npy_problem, numeric_table

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
    (ratings.csv). Columns: user, item, rating[, timestamp]; without timestamps the file order stands in.
    A bad row raises DataError naming `name` and its 1-based line (a ragged row, a cell that is not a number)."""
    lines = text.decode("utf-8", "replace").replace("\r", "").split("\n")
    first_index = next((n for n, line in enumerate(lines) if line.strip()), None)
    if first_index is None:
        raise DataError(f"{name} is empty")
    first = lines[first_index]
    separator = "::" if "::" in first else "\t" if "\t" in first else ","
    if not first.split(separator)[0].strip().lstrip("-").isdigit():
        # A header row such as userId,movieId,rating,timestamp; blanked, so that lines keep their numbers.
        lines[first_index] = ""
    table = numeric_table("\n".join(lines), name, delimiter=separator)
    if table.shape[0] == 0:
        raise DataError(f"{name} has a header but no rating rows")
    if table.shape[1] < 3:
        line = next(n for n, row in enumerate(lines, start=1) if row.strip())
        raise DataError(
            f"{name} line {line} has {table.shape[1]} columns; a ratings file needs at least 3 (user, item, rating"
            f"[, timestamp]) separated by {separator!r}"
        )
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


def load_labelled(path: Path, where: str | None = None) -> np.ndarray:
    """The course's layout: an (n, 3) array of user index, item index, label (1 = interaction, 0 = negative)."""
    where = where or path.name
    problem = npy_problem(path)
    if problem is not None:
        raise DataError(f"{where} {problem}")
    try:
        table = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{where} is not a numpy .npy file: {err}") from None
    if table.ndim != 2 or table.shape[1] != 3:
        raise DataError(f"{where} must be an (n, 3) array of user, item, label; its shape is {list(table.shape)}")
    if len(table) == 0:
        raise DataError(f"{where} has no rows")
    bad = np.flatnonzero(~np.isin(table[:, 2], (0, 1)) | (table[:, :2] < 0).any(axis=1))
    if bad.size:
        raise DataError(
            f"{where} row {bad[0]} is {table[bad[0]].tolist()}: users and items must be indices >= 0 and labels 0 or 1"
        )
    return table.astype(np.int64)
