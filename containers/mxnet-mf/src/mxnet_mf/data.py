"""MovieLens rating and title files as users have them, and the id <-> contiguous index mapping.

Ratings: `u.data` / `ua.base` / `u1.base` (tab: user, item, rating, timestamp), `ratings.dat` (`::`),
`ratings.csv` (header userId,movieId,rating,timestamp). Titles: `u.item` (`|`, latin-1), `movies.dat`
(`::`), `movies.csv` (header movieId,title,genres, quoted titles). Ids stay as the user wrote them:
integers when every id of a column is one, else strings.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from byoc_runtime import training_data
from byoc_runtime.errors import DataError
from byoc_runtime.training_data import HEAD_BYTES, check_file_kind
from byoc_runtime.training_env import Channel


@dataclass(frozen=True)
class RatingTable:
    users: np.ndarray  # raw ids: int64, or str when some id is not an integer
    items: np.ndarray
    ratings: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.ratings)

    @classmethod
    def concat(cls, tables: list[RatingTable]) -> RatingTable:
        def column(name: str) -> np.ndarray:
            parts = [getattr(t, name) for t in tables]
            if len({p.dtype.kind for p in parts}) > 1:  # mixed int/str ids across files: compare as text
                parts = [p.astype(str) for p in parts]
            return np.concatenate(parts)

        return cls(column("users"), column("items"), np.concatenate([t.ratings for t in tables]))


def decode_text(blob: bytes) -> str:
    # MovieLens 100K/1M files are latin-1; newer ones UTF-8.
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError:
        return blob.decode("latin-1")


def _separator(line: str) -> str | None:
    if "::" in line:
        return "::"
    if "\t" in line:
        return "\t"
    if "," in line:
        return ","
    return None  # whitespace


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def id_column(cells: Iterable[str]) -> np.ndarray:
    values = list(cells)
    try:
        return np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        return np.array(values, dtype=str)


def parse_ratings(text: str, source: str = "ratings") -> RatingTable:
    """Rows of user, item, rating[, timestamp]; a header row (ratings.csv) is skipped. A bad row raises
    DataError naming `source` and its 1-based line number (blank lines count, as in an editor)."""
    numbered = [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]
    if not numbered:
        raise DataError(f"{source} has no rating rows")
    sep = _separator(numbered[0][1])
    first = numbered[0][1].split(sep)
    if len(first) >= 3 and not _is_number(first[2].strip()):
        numbered = numbered[1:]  # header, e.g. userId,movieId,rating,timestamp
    if not numbered:
        raise DataError(f"{source} has a header but no rating rows")
    rows = [line.split(sep) for _, line in numbered]
    widths = np.fromiter(map(len, rows), np.int64, len(rows))
    bad = np.flatnonzero((widths < 3) | (widths != widths[0]))
    if bad.size:
        number, line = numbered[bad[0]]
        shown = repr(line.strip()[:80])
        if widths[bad[0]] < 3:
            raise DataError(
                f"{source} line {number}: expected user, item, rating[, timestamp] separated by "
                f"{sep or 'whitespace'!r}, got {shown}"
            )
        raise DataError(
            f"{source} line {number} has {widths[bad[0]]} fields, line {numbered[0][0]} has {widths[0]} "
            f"(separated by {sep or 'whitespace'!r}): {shown}"
        )
    cells = [row[2].strip() for row in rows]
    try:
        ratings = np.array(cells, dtype=np.float32)
    except ValueError:
        ratings = None
    if ratings is None or not np.all(np.isfinite(ratings)):
        for (number, _), cell in zip(numbered, cells, strict=True):
            if not _is_number(cell):
                raise DataError(f"{source} line {number}: the rating {cell!r} is not a number")
            if not np.isfinite(np.float32(cell)):
                raise DataError(f"{source} line {number}: the rating {cell!r} is not a finite number")
    users = id_column(row[0].strip() for row in rows)
    items = id_column(row[1].strip() for row in rows)
    return RatingTable(users, items, ratings)


READS = (
    "mxnet-mf reads MovieLens rating text (u.data / ua.base tab-separated, ratings.dat '::'-separated, "
    "ratings.csv): declare text/csv or no ContentType"
)


def channel_blobs(channel: Channel) -> list[tuple[str, bytes]]:
    """(name, content) of every file of a channel (name relative to the channel); in Pipe mode the first
    epoch's stream. A file that is not text, or whose bytes disagree with the channel's ContentType, is refused."""
    blobs = training_data.channel_blobs(channel)
    for name, blob in blobs:
        check_file_kind(channel.name, channel.content_type, name, blob[:HEAD_BYTES], ("text",), READS)
    return blobs


def read_ratings(channel: Channel) -> RatingTable:
    tables = [
        parse_ratings(decode_text(blob), f"Channel '{channel.name}': {name}") for name, blob in channel_blobs(channel)
    ]
    return RatingTable.concat(tables)


def parse_titles(text: str) -> dict[str, str]:
    """item id (as text) -> title, from u.item, movies.dat, movies.csv or plain `id<TAB|,>title` rows."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return {}
    head = lines[0]
    if "::" in head:
        rows = [line.split("::") for line in lines]
    elif head.split(",")[0].strip().lower() in ("movieid", "itemid", "item_id", "id"):
        rows = list(csv.reader(io.StringIO("\n".join(lines[1:]))))
    elif "|" in head:
        rows = [line.split("|") for line in lines]
    elif "\t" in head:
        rows = [line.split("\t") for line in lines]
    else:
        rows = list(csv.reader(io.StringIO("\n".join(lines))))
    return {row[0].strip(): row[1].strip() for row in rows if len(row) >= 2}


def read_titles(channel: Channel) -> dict[str, str]:
    titles: dict[str, str] = {}
    for _, blob in channel_blobs(channel):
        titles.update(parse_titles(decode_text(blob)))
    return titles


@dataclass
class IdIndex:
    """Sorted unique raw ids; an id's position is its contiguous index (the embedding row)."""

    ids: np.ndarray
    _positions: dict[Any, int] | None = field(default=None, repr=False)

    @classmethod
    def build(cls, column: np.ndarray) -> tuple[IdIndex, np.ndarray]:
        ids, inverse = np.unique(column, return_inverse=True)
        return cls(ids), inverse.astype(np.int64)

    @property
    def numeric(self) -> bool:
        return self.ids.dtype.kind in "iu"

    def __len__(self) -> int:
        return len(self.ids)

    def lookup_array(self, column: np.ndarray) -> np.ndarray:
        """Indices of raw ids; -1 where an id is unknown."""
        column = np.asarray(column)
        if self.numeric and column.dtype.kind not in "iu":
            return np.array([self.lookup(v) for v in column.tolist()], dtype=np.int64)
        if not self.numeric:
            column = column.astype(str)
        positions = np.searchsorted(self.ids, column)
        positions = np.minimum(positions, len(self.ids) - 1)
        found = self.ids[positions] == column
        return np.where(found, positions, -1).astype(np.int64)

    def key(self, value: Any) -> Any:
        """A request's id (196, "196", 196.0) as this index stores it; None if it cannot be one."""
        if not self.numeric:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            return None if isinstance(value, bool | dict | list) or value is None else str(value)
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return None
        return None

    def lookup(self, value: Any) -> int:
        if self._positions is None:
            self._positions = {raw: position for position, raw in enumerate(self.ids.tolist())}
        return self._positions.get(self.key(value), -1)

    def id_of(self, position: int) -> int | str:
        return self.ids[position].item()

    def ids_of(self, positions: np.ndarray) -> list[int | str]:
        return self.ids[positions].tolist()


def titles_for(index: IdIndex, titles: dict[str, str]) -> np.ndarray:
    return np.array([titles.get(str(raw), "") for raw in index.ids.tolist()], dtype=str)
