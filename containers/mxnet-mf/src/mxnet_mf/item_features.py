"""Item features for the DSSM content model: the `items` channel's files, read into words, and the
vocabulary that turns words into the token indices the item tower embeds.

Formats, told apart by their first line:
  u.item (ML-100K)  id|title|release date|video date|IMDb URL|19 genre flags   (latin-1; u.genre's names
                    when a u.genre file is in the channel, else ML-100K's 19)
  movies.dat        id::title::Genre|Genre
  movies.csv        movieId,title,genres  (ml-latest, ml-25m; quoted titles)
  generic CSV       a header with an id column (item_id, itemId, movieId or id) and any others: `title`,
                    `genres` (split on |), `year`, `text`/`description`; every other column's value is one
                    word of that column ("color=red")
  JSON Lines        {"item_id": .., "title": .., "genres": [..] or "A|B", "year": 1995, "text": .., ...}:
                    the same fields as the generic CSV; lists are several words
Words: "title:<word>" for each word of the title (lower-case letters and digits; the "(1995)" at its end is
the year), "genre:<name>", "year:<yyyy>" and "decade:<yyy0>", "<column>:<word>" for free text, "<column>=<value>"
for other columns. A request that adds an item after deployment sends the same JSON fields.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from byoc_runtime.errors import DataError

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
ID_COLUMNS = ("item_id", "itemid", "movieid", "movie_id", "id")
TEXT_FIELDS = ("text", "description", "overview", "plot", "tags")
NO_GENRE = {"(no genres listed)", "unknown", ""}
MAX_WORDS = 64  # per item: a description longer than this keeps its first words
_WORD = re.compile(r"[a-z0-9]+")
_YEAR_AT_END = re.compile(r"\((\d{4})\)\s*$")
_YEAR = re.compile(r"(1[89]\d\d|20\d\d)")


@dataclass(frozen=True)
class ItemFeatures:
    ids: list[Any]  # raw item ids as written (int when every id of the file is one, else str)
    words: list[list[str]]  # per item
    titles: list[str]  # per item, "" when it has none


def _text_words(column: str, text: str) -> list[str]:
    return [f"{column}:{word}" for word in _WORD.findall(text.lower())]


def words_of(fields: Mapping[str, Any]) -> list[str]:
    """The words of one item's fields (a JSON object or a CSV row; the id field is ignored). Raises
    ValueError on a field that is neither text, a number nor a list of them."""
    words: list[str] = []
    year = fields.get("year")
    for key, value in fields.items():
        name = str(key).strip().lower()
        if name in ID_COLUMNS or name == "image" or value is None:
            continue  # an image is the image tower's (dssm.image_array), not words
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, dict | list) for v in values):
            raise ValueError(f"field {key!r} must be text, a number or a list of them, got {value!r}")
        texts = [str(v).strip() for v in values if str(v).strip()]
        if name == "title":
            for text in texts:
                found = _YEAR_AT_END.search(text)
                if found:
                    year = year or found.group(1)
                    text = text[: found.start()]
                words += _text_words("title", text)
        elif name in ("genres", "genre"):
            for text in texts:
                words += [f"genre:{g.strip().lower()}" for g in text.split("|") if g.strip().lower() not in NO_GENRE]
        elif name in ("year", "release_date", "release date"):
            continue  # below, once
        elif name in TEXT_FIELDS:
            for text in texts:
                words += _text_words(name, text)
        else:
            words += [f"{name}={text.lower()}" for text in texts]
    if year is None and fields.get("release_date"):
        found = _YEAR.search(str(fields["release_date"]))
        year = found.group(1) if found else None
    if year is not None:
        found = _YEAR.search(str(year))
        if found:
            words += [f"year:{found.group(1)}", f"decade:{found.group(1)[:3]}0"]
    return words[:MAX_WORDS]


def _id(text: str) -> Any:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        return text


def _uniform_ids(ids: list[Any]) -> list[Any]:
    """Integers when every id is one, else all strings (as the rating files' ids are read)."""
    return ids if all(isinstance(i, int) for i in ids) else [str(i) for i in ids]


def title_of(fields: Mapping[str, Any]) -> str:
    title = fields.get("title")
    return title.strip() if isinstance(title, str) else ""


Rows = tuple[list[Any], list[dict[str, Any]]]  # item ids, and each item's fields as JSON Lines would give them


def _features(ids: list[Any], rows: list[Mapping[str, Any]]) -> ItemFeatures:
    return ItemFeatures(_uniform_ids(ids), [words_of(row) for row in rows], [title_of(row) for row in rows])


def parse_u_item(text: str, genre_names: list[str] | None = None) -> Rows:
    names = genre_names or list(ML100K_GENRES)
    ids, rows = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split("|")
        if len(cells) < 5 + len(names):
            raise DataError(f"line {number}: u.item rows have id|title|date|video date|URL|{len(names)} genre flags")
        flags = cells[5 : 5 + len(names)]
        genres = [name for name, flag in zip(names, flags, strict=True) if flag.strip() == "1"]
        ids.append(_id(cells[0]))
        rows.append({"title": cells[1], "release_date": cells[2], "genres": genres})
    return ids, rows


def parse_u_genre(text: str) -> list[str]:
    """u.genre: `name|index` rows, in index order."""
    rows = [line.split("|") for line in text.splitlines() if line.strip()]
    return [name for name, _ in sorted(((r[0], int(r[1])) for r in rows if len(r) == 2), key=lambda r: r[1])]


def parse_csv(text: str) -> Rows:
    """movies.csv or a generic CSV with a header (movies.dat's '::' too)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and "::" in lines[0]:
        cells = [line.split("::") for line in lines]
        rows = [{"title": c[1] if len(c) > 1 else "", "genres": c[2:3]} for c in cells]
        return [_id(c[0]) for c in cells], rows
    reader = csv.reader(io.StringIO("\n".join(lines)))
    header = [cell.strip() for cell in next(reader, [])]
    lowered = [cell.lower() for cell in header]
    id_column = next((lowered.index(name) for name in ID_COLUMNS if name in lowered), None)
    if id_column is None:
        raise DataError(f"the header {header} names no item id column (one of {', '.join(ID_COLUMNS)})")
    ids, rows = [], []
    for number, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise DataError(f"line {number}: {len(row)} fields where the header has {len(header)}")
        ids.append(_id(row[id_column]))
        rows.append({key: value for n, (key, value) in enumerate(zip(header, row, strict=True)) if n != id_column})
    return ids, rows


def parse_jsonlines(text: str) -> Rows:
    ids, rows = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise DataError(f"line {number} is not JSON: {err}") from None
        if not isinstance(row, dict) or item_id_of(row) is None:
            raise DataError(f'line {number}: expected an object with "item_id", got {line[:80]!r}')
        try:
            words_of(row)
        except ValueError as err:
            raise DataError(f"line {number}: {err}") from None
        ids.append(item_id_of(row))
        rows.append({key: value for key, value in row.items() if str(key).lower() not in ID_COLUMNS})
    return ids, rows


def item_id_of(row: Mapping[str, Any]) -> Any:
    for key in row:
        if str(key).lower() in ID_COLUMNS:
            value = row[key]
            return value if isinstance(value, int | str) and not isinstance(value, bool) else None
    return None


def parse_item_rows(files: Iterable[tuple[str, str]]) -> Rows:
    """Every file of the channel (name, text), merged; a later file's item replaces an earlier one's."""
    files = list(files)
    genre_names = next((parse_u_genre(text) for name, text in files if name.endswith("u.genre")), None)
    merged: dict[Any, dict[str, Any]] = {}
    for name, text in files:
        if name.endswith("u.genre"):
            continue
        head = next((line for line in text.splitlines() if line.strip()), "")
        try:
            if head.lstrip().startswith("{"):
                ids, rows = parse_jsonlines(text)
            elif "|" in head and "::" not in head and head.count("|") >= 20:
                ids, rows = parse_u_item(text, genre_names)
            else:
                ids, rows = parse_csv(text)
        except DataError as err:
            raise DataError(f"Channel 'items': {name}: {err}") from None
        merged.update(zip(ids, rows, strict=True))
    if not merged:
        raise DataError("Channel 'items' holds no items")
    return list(merged), list(merged.values())


def parse_items(files: Iterable[tuple[str, str]]) -> ItemFeatures:
    return _features(*parse_item_rows(files))


class Vocabulary:
    """Word -> token index (0 is padding: a word never seen in training). Kept with the model, so serving
    turns an added item's words into the same indices; unknown words are dropped, not an error."""

    def __init__(self, words: list[str]):
        self.words = list(words)
        self._index = {word: position + 1 for position, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words) + 1  # with padding

    @classmethod
    def build(cls, documents: Iterable[list[str]], min_count: int) -> Vocabulary:
        """Words found in at least `min_count` documents, most frequent first."""
        counts = Counter(word for document in documents for word in set(document))
        return cls([word for word, count in sorted(counts.items(), key=lambda c: (-c[1], c[0])) if count >= min_count])

    def encode(self, documents: list[list[str]], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, known): padded (n, width) int32 token indices and each document's count of known words."""
        encoded = [[self._index[w] for w in document if w in self._index] for document in documents]
        width = width or max([len(e) for e in encoded] + [1])
        tokens = np.zeros((len(encoded), width), dtype=np.int32)
        for row, indices in enumerate(encoded):
            tokens[row, : min(len(indices), width)] = indices[:width]
        return tokens, np.array([min(len(e), width) for e in encoded], dtype=np.int32)
