"""MovieLens rating and title files as users have them, and the id <-> contiguous index mapping.

Ratings: `u.data` / `ua.base` / `u1.base` (tab: user, item, rating, timestamp), `ratings.dat` (`::`),
`ratings.csv` (header userId,movieId,rating,timestamp), or Object2Vec's JSON Lines (`{"in0": [user], "in1":
[item], "label": 4.0}` per line), told apart by the channel's ContentType (application/jsonlines) or, without
one, by the first byte. Titles: `u.item` (`|`, latin-1), `movies.dat` (`::`), `movies.csv` (header
movieId,title,genres, quoted titles). Ids stay as the user wrote them: integers when every id of a column is
one, else strings (JSON Lines tokens are always integers).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from byoc_runtime import training_data
from byoc_runtime.codecs import json_codec
from byoc_runtime.errors import DataError
from byoc_runtime.training_data import HEAD_BYTES, check_file_kind, describe
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


@dataclass(frozen=True)
class Expect:
    """What the job asks of every row beyond being well formed (Object2Vec mode): ids that are integer tokens
    below the vocabulary sizes, and labels that are classes 0..num_classes-1 (output_layer softmax)."""

    vocab0: int | None = None
    vocab1: int | None = None
    num_classes: int | None = None

    def check(self, source: str, lines: list[int], users: np.ndarray, items: np.ndarray, labels: np.ndarray) -> None:
        for column, vocab, name in ((users, self.vocab0, "in0 (user)"), (items, self.vocab1, "in1 (item)")):
            if vocab is None:
                continue
            encoder = name[2]
            if column.dtype.kind not in "iu":
                row = next(n for n, value in enumerate(column.tolist()) if not _is_integer(value))
                raise DataError(
                    f"{source} line {lines[row]}: the {name} id {column[row]!r} is not an integer token; "
                    f"enc{encoder}_vocab_size is set, so ids must be tokens 0 to {vocab - 1}"
                )
            bad = np.flatnonzero((column < 0) | (column >= vocab))
            if bad.size:
                raise DataError(
                    f"{source} line {lines[bad[0]]}: the {name} token {column[bad[0]]} is outside "
                    f"enc{encoder}_vocab_size {vocab} (tokens 0 to {vocab - 1}; {bad.size} such line(s))"
                )
        if self.num_classes is not None:
            bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels >= self.num_classes))
            if bad.size:
                raise DataError(
                    f"{source} line {lines[bad[0]]}: the label {float(labels[bad[0]]):g} is not a class of "
                    f"output_layer softmax with num_classes {self.num_classes} (labels 0 to {self.num_classes - 1}; "
                    f"{bad.size} such line(s)); binarize ratings first, e.g. 1 if rating > 3 else 0"
                )


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


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


def parse_ratings(text: str, source: str = "ratings", expect: Expect | None = None) -> RatingTable:
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
    if expect is not None:
        expect.check(source, [number for number, _ in numbered], users, items, ratings)
    return RatingTable(users, items, ratings)


JSONLINES_TYPES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines", "application/json-lines")
_EXAMPLE = '{"in0": [196], "in1": [242], "label": 3.0}'


def parse_jsonlines(text: str, source: str = "ratings", expect: Expect | None = None) -> RatingTable:
    """Object2Vec's training format: one object per line with in0 and in1 (one integer token each: the user
    and the item) and a numeric label (a rating, or a class for output_layer softmax). A bad line raises
    DataError naming `source` and its 1-based line number."""
    users: list[int] = []
    items: list[int] = []
    labels: list[float] = []
    lines: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json_codec.loads(line)
        except ValueError as err:
            raise DataError(f"{source} line {number} is not JSON ({err}): {line.strip()[:80]!r}") from None
        if not isinstance(row, dict):
            raise DataError(f"{source} line {number}: expected an object such as {_EXAMPLE}, got {line.strip()[:80]!r}")
        users.append(_token(row, "in0", source, number))
        items.append(_token(row, "in1", source, number))
        label = row.get("label")
        if label is None:
            raise DataError(f'{source} line {number} has no "label" (expected e.g. {_EXAMPLE})')
        if isinstance(label, bool) or not isinstance(label, int | float):
            raise DataError(f"{source} line {number}: the label {label!r} is not a number")
        labels.append(float(label))
        lines.append(number)
    if not lines:
        raise DataError(f"{source} has no JSON lines")
    table = RatingTable(np.array(users, dtype=np.int64), np.array(items, dtype=np.int64), np.array(labels, np.float32))
    if not np.all(np.isfinite(table.ratings)):
        row = int(np.flatnonzero(~np.isfinite(table.ratings))[0])
        raise DataError(f"{source} line {lines[row]}: the label {labels[row]!r} is too large for a 32-bit float")
    if expect is not None:
        expect.check(source, lines, table.users, table.items, table.ratings)
    return table


def _token(row: dict, key: str, source: str, number: int) -> int:
    value = row.get(key)
    if value is None:
        raise DataError(f'{source} line {number} has no "{key}" (expected e.g. {_EXAMPLE})')
    if isinstance(value, list) and len(value) != 1:
        raise DataError(
            f"{source} line {number}: {key} holds {len(value)} tokens; mxnet-mf reads one token per input "
            f"(a user id in in0, an item id in in1), e.g. {_EXAMPLE}"
        )
    token = value[0] if isinstance(value, list) else None
    if isinstance(token, bool) or not isinstance(token, int):
        raise DataError(
            f"{source} line {number}: {key} must be a list of one integer token such as [196], got {value!r}"
        )
    return token


def is_jsonlines(content_type: str | None, head: bytes) -> bool:
    """JSON Lines by the channel's ContentType, or (none declared) by a first non-blank byte `{`."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in JSONLINES_TYPES:
        return True
    return not media and head.lstrip()[:1] == b"{"


READS = (
    "mxnet-mf reads MovieLens rating text (u.data / ua.base tab-separated, ratings.dat '::'-separated, "
    "ratings.csv) or Object2Vec JSON Lines (" + _EXAMPLE + " per line): declare text/csv, "
    "application/jsonlines or no ContentType"
)


def channel_blobs(channel: Channel) -> list[tuple[str, bytes]]:
    """(name, content) of every file of a channel (name relative to the channel); in Pipe mode the first
    epoch's stream. A file that is not text, or whose bytes disagree with the channel's ContentType, is refused."""
    blobs = training_data.channel_blobs(channel)
    for name, blob in blobs:
        check_file_kind(channel.name, channel.content_type, name, blob[:HEAD_BYTES], ("text",), READS)
    return blobs


def read_ratings(channel: Channel, expect: Expect | None = None) -> RatingTable:
    """Every file of the channel: MovieLens rating text or Object2Vec JSON Lines, file by file."""
    tables = []
    for name, blob in channel_blobs(channel):
        source = f"Channel '{channel.name}': {name}"
        head = blob[:HEAD_BYTES]
        if is_jsonlines(channel.content_type, head):
            if blob.strip() and head.lstrip()[:1] != b"{":
                raise DataError(
                    f"Channel '{channel.name}' is declared {channel.content_type} but {name} looks like "
                    f"{describe(head)}; {READS}"
                )
            tables.append(parse_jsonlines(decode_text(blob), source, expect))
        else:
            tables.append(parse_ratings(decode_text(blob), source, expect))
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
