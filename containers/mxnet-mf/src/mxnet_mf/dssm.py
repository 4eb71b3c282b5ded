"""The DSSM content model (model=dssm) as numpy arrays: towers, catalogue, and items added after deployment.

Item tower: the mean of the item's word embeddings (title words, genres, year, any other feature: see
item_features.py) through an MLP; user tower: the user's id embedding beside the weighted mean of the word
embeddings of the items the user liked (their "queries"), through another MLP. Score: the cosine of the two.
An item's vector comes from its words alone, so an item nobody rated, or one added to a deployed model by
sending its features, is scored like any other. Saved as dssm.npz (arrays, loaded with allow_pickle=False) +
model.json; serving needs no MXNet.

Items added at serving time go to a journal (one JSON line per request, appended under an exclusive lock)
that every worker of the container replays before answering, so all workers see the same catalogue and a
restarted worker rebuilds it. The journal lives in BYOC_DSSM_JOURNAL_DIR (default: the temporary
directory), so added items last as long as the container; `item_features` in the items channel of the next
training job keeps them for good.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime import atomic

from .data import IdIndex
from .item_features import Vocabulary, title_of, words_of
from .recommender import MODEL_SETTINGS

MODEL_ARRAYS = "dssm.npz"
FORMAT_VERSION = 1


def id_key(value: Any) -> Any:
    """One spelling per id: 7, 7.0 and "7" are the int 7; anything else its text; None if not an id."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else str(value)
    if isinstance(value, str):
        stripped = value.strip()
        try:
            return int(stripped)
        except ValueError:
            return stripped
    if isinstance(value, int | np.integer):
        return int(value)
    return str(value)


@dataclass
class Towers:
    """The trained weights: word and user embeddings, and the two MLPs as (weight (in, out), bias) pairs."""

    word_embedding: np.ndarray  # (vocabulary + 1, dim), row 0 (padding) zero
    user_embedding: np.ndarray  # (users, dim)
    item_layers: list[tuple[np.ndarray, np.ndarray]]
    user_layers: list[tuple[np.ndarray, np.ndarray]]
    # The image tower (an item_images channel was given): standardise the image's numbers, project to dim.
    image_projection: np.ndarray | None = None  # (image size, dim)
    image_mean: np.ndarray | None = None  # (image size,)
    image_scale: np.ndarray | None = None
    image_divisor: float = 1.0  # 255 when the training images were uint8: they were scaled to [0, 1]

    @property
    def image_size(self) -> int | None:
        return None if self.image_projection is None else int(self.image_projection.shape[0])

    def image_rows(self, images: np.ndarray) -> np.ndarray:
        """(n, image size) raw image numbers -> (n, dim), added to the item's bag of words."""
        return ((images - self.image_mean) / self.image_scale) @ self.image_projection

    @staticmethod
    def _mlp(x: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        for number, (weight, bias) in enumerate(layers):
            x = x @ weight + bias
            if number < len(layers) - 1:
                x = np.maximum(x, 0)
        return x

    def bag(self, tokens: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Weighted sum of word embeddings, (n, width) tokens and weights -> (n, dim)."""
        return np.einsum("nw,nwd->nd", weights, self.word_embedding[tokens])

    def items(self, tokens: np.ndarray, image_rows: np.ndarray | None = None) -> np.ndarray:
        """Unit item vectors of padded token rows (0 = padding), plus each item's image rows where it has one."""
        bag = self.bag(tokens, item_weights(tokens))
        if image_rows is not None:
            bag = bag + image_rows
        return unit_rows(self._mlp(bag, self.item_layers))

    def users(self, id_rows: np.ndarray, profile_tokens: np.ndarray, profile_weights: np.ndarray) -> np.ndarray:
        """Unit user vectors: id embedding rows (zeros for a user known only by history) + profile bag."""
        joined = np.concatenate([id_rows, self.bag(profile_tokens, profile_weights)], axis=1)
        return unit_rows(self._mlp(joined, self.user_layers))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"word_embedding": self.word_embedding, "user_embedding": self.user_embedding}
        for side, layers in (("item", self.item_layers), ("user", self.user_layers)):
            for number, (weight, bias) in enumerate(layers):
                out[f"{side}_layer_{number}_weight"], out[f"{side}_layer_{number}_bias"] = weight, bias
        if self.image_projection is not None:
            out.update(image_projection=self.image_projection, image_mean=self.image_mean, image_scale=self.image_scale,
                       image_divisor=np.array([self.image_divisor], np.float32))  # fmt: skip
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Towers:
        def layers(side: str) -> list[tuple[np.ndarray, np.ndarray]]:
            count = sum(1 for name in arrays if name.startswith(f"{side}_layer_") and name.endswith("_weight"))
            names = [(f"{side}_layer_{n}_weight", f"{side}_layer_{n}_bias") for n in range(count)]
            return [(arrays[w].astype(np.float32), arrays[b].astype(np.float32)) for w, b in names]

        image = {name: arrays[name].astype(np.float32) for name in ("image_projection", "image_mean", "image_scale")
                 if name in arrays}  # fmt: skip
        if "image_divisor" in arrays:
            image["image_divisor"] = float(arrays["image_divisor"][0])
        return cls(
            arrays["word_embedding"].astype(np.float32),
            arrays["user_embedding"].astype(np.float32),
            layers("item"),
            layers("user"),
            **image,
        )


def item_weights(tokens: np.ndarray) -> np.ndarray:
    """The item tower's bag: the mean of the item's known words (0 = padding)."""
    known = (tokens > 0).astype(np.float32)
    return known / np.maximum(known.sum(axis=1, keepdims=True), 1.0)


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def profiles(vocabulary_size: int, item_tokens: np.ndarray, users: np.ndarray, items: np.ndarray, num_users: int,
             width: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each user's query words: the `width` most frequent known words over the items the user liked (one count
    per item), weighted by their share of those counts. (num_users, width) tokens and weights. Vectorised:
    ML-25M's 162,000 users take seconds, not a Python loop over users x vocabulary."""
    tokens = np.zeros((num_users, width), dtype=np.int32)
    weights = np.zeros((num_users, width), dtype=np.float32)
    pair_tokens = item_tokens[items]
    owners = np.repeat(np.asarray(users, np.int64), pair_tokens.shape[1])
    words = pair_tokens.ravel().astype(np.int64)
    known = words > 0
    keys, counts = np.unique(owners[known] * vocabulary_size + words[known], return_counts=True)
    if not len(keys):
        return tokens, weights
    owner, word = keys // vocabulary_size, keys % vocabulary_size
    order = np.lexsort((word, -counts, owner))  # per user: most frequent first, ties by word index
    owner, word, counts = owner[order], word[order], counts[order]
    starts = np.searchsorted(owner, owner, side="left")
    rank = np.arange(len(owner)) - starts
    keep = rank < width
    owner, word, counts, rank = owner[keep], word[keep], counts[keep].astype(np.float32), rank[keep]
    totals = np.bincount(owner, weights=counts, minlength=num_users)
    tokens[owner, rank] = word
    weights[owner, rank] = counts / totals[owner]
    return tokens, weights


class Catalogue:
    """The items the model can recommend, one immutable snapshot: ids in row order (found by id_key), their
    unit vectors, titles and known word tokens. Adding items makes a new snapshot, swapped in whole, so a
    request that took one sees ids and vectors that agree."""

    def __init__(self, ids: list[Any], vectors: np.ndarray, titles: list[str], tokens: list[np.ndarray]):
        self.ids, self.vectors, self.titles, self.tokens = list(ids), vectors, list(titles), list(tokens)
        self.positions = {id_key(raw): row for row, raw in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, value: Any) -> int:
        return self.positions.get(id_key(value), -1)

    def id_of(self, row: int) -> Any:
        raw = self.ids[row]
        return raw.item() if isinstance(raw, np.generic) else raw

    def title(self, row: int) -> str | None:
        return self.titles[row] or None

    def padded_tokens(self, rows: np.ndarray) -> np.ndarray:
        width = max([len(self.tokens[row]) for row in rows.tolist()] + [1])
        out = np.zeros((len(rows), width), np.int32)
        for n, row in enumerate(rows.tolist()):
            out[n, : len(self.tokens[row])] = self.tokens[row]
        return out

    def with_items(self, ids: list[Any], vectors: np.ndarray, titles: list[str], tokens: list[np.ndarray]) -> Catalogue:
        """A new snapshot with these items added, or replaced where the id is already there."""
        all_ids, all_titles, all_tokens = list(self.ids), list(self.titles), list(self.tokens)
        positions, appended = dict(self.positions), []
        replaced = self.vectors.copy()
        for raw, vector, title, known in zip(ids, vectors, titles, tokens, strict=True):
            row = positions.get(id_key(raw))
            if row is None:
                row = positions[id_key(raw)] = len(all_ids)
                all_ids.append(raw)
                all_titles.append(title)
                all_tokens.append(known)
                appended.append(vector)
                continue
            if row < len(replaced):
                replaced[row] = vector
            else:
                appended[row - len(replaced)] = vector
            all_titles[row], all_tokens[row] = title or all_titles[row], known
        vectors_out = np.vstack([replaced, np.array(appended, np.float32)]) if appended else replaced
        return Catalogue(all_ids, vectors_out, all_titles, all_tokens)


@dataclass
class DssmModel:
    towers: Towers
    vocabulary: Vocabulary
    users: IdIndex
    user_profile_tokens: np.ndarray
    user_profile_weights: np.ndarray
    item_ids: list[Any]  # the trained catalogue: ids, padded tokens, titles
    item_tokens: np.ndarray
    titles: list[str]
    rated_indptr: np.ndarray  # CSR over the trained catalogue's rows: the items each user rated in training
    rated_indices: np.ndarray
    settings: dict = field(default_factory=dict)
    journal: Path | None = None
    item_image_rows: np.ndarray | None = None  # (items, dim): the image tower's output, zeros without an image

    def __post_init__(self) -> None:
        self.user_vectors = self.towers.users(
            self.towers.user_embedding, self.user_profile_tokens, self.user_profile_weights
        )
        vectors = self.towers.items(self.item_tokens, self.item_image_rows)
        self.catalogue = Catalogue(self.item_ids, vectors, self.titles, [row[row > 0] for row in self.item_tokens])
        self._lock = threading.Lock()
        self._journal_offset = 0

    # ------------------------------------------------------------------ the towers
    def history_vectors(self, catalogue: Catalogue, histories: list[np.ndarray]) -> np.ndarray:
        """Users known only by the items they liked (catalogue rows): the user tower with a zero id row."""
        liked = np.concatenate([np.asarray(h, np.int64) for h in histories] + [np.zeros(0, np.int64)])
        owners = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
        width = self.user_profile_tokens.shape[1]
        tokens, weights = profiles(len(self.vocabulary), catalogue.padded_tokens(liked), owners,
                                   np.arange(len(liked)), len(histories), width)  # fmt: skip
        ids = np.zeros((len(histories), self.towers.user_embedding.shape[1]), np.float32)
        return self.towers.users(ids, tokens, weights)

    def rated_rows(self, user: int) -> np.ndarray:
        return self.rated_indices[self.rated_indptr[user] : self.rated_indptr[user + 1]]

    def encode(self, fields: list[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, known word counts) of items given by their features (the items channel's JSON fields)."""
        return self.vocabulary.encode([words_of(f) for f in fields])

    def item_vectors(self, fields: list[Mapping[str, Any]], tokens: np.ndarray | None = None) -> np.ndarray:
        """Unit vectors of items given by their features, an "image" (its numbers, any shape) among them;
        `tokens`: their words already encoded."""
        tokens = self.encode(fields)[0] if tokens is None else tokens
        images = [f.get("image") for f in fields]
        if self.towers.image_size is None or all(image is None for image in images):
            return self.towers.items(tokens)
        rows = np.zeros((len(fields), self.towers.word_embedding.shape[1]), np.float32)
        for n, image in enumerate(images):
            if image is not None:
                raw = image_array(image, self.towers.image_size)
                if self.towers.image_divisor > 1 and raw.max() > 1:  # 0..255 pixels, as the training channel's
                    raw = raw / self.towers.image_divisor
                rows[n] = self.towers.image_rows(raw[None])[0]
        return self.towers.items(tokens, rows)

    # ------------------------------------------------------------------ items added after deployment
    def add_items(self, items: list[dict[str, Any]]) -> None:
        """Items as {"item_id", ...features}: appended to the journal and taken in; every other worker takes
        them in before its next answer (sync)."""
        if self.journal is None:
            self._apply(items)
            return
        line = json.dumps(items, separators=(",", ":")) + "\n"
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line.encode())
        finally:
            os.close(fd)  # closing releases the lock
        self.sync()

    def sync(self) -> None:
        """Take in what any worker appended to the journal since this one last looked."""
        if self.journal is None:
            return
        try:
            size = self.journal.stat().st_size
        except FileNotFoundError:
            return
        if size <= self._journal_offset:
            return
        with self._lock:
            with open(self.journal, "rb") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
                handle.seek(self._journal_offset)
                data = handle.read()
            complete = data[: data.rfind(b"\n") + 1]
            for line in complete.splitlines():
                self._apply(json.loads(line))
            self._journal_offset += len(complete)

    def _apply(self, items: list[dict[str, Any]]) -> None:
        fields = [{k: v for k, v in item.items() if k != "item_id"} for item in items]
        tokens, _ = self.encode(fields)
        self.catalogue = self.catalogue.with_items(
            [item["item_id"] for item in items],
            self.item_vectors(fields, tokens),
            [title_of(f) for f in fields],
            [row[row > 0] for row in tokens],
        )

    # ------------------------------------------------------------------ files
    def save(self, model_dir: Path) -> None:
        model_dir.mkdir(parents=True, exist_ok=True)
        arrays = {f"param_{name}": value for name, value in self.towers.arrays().items()}
        ids = np.array(self.item_ids)
        arrays.update(
            vocabulary=np.array(self.vocabulary.words, dtype=str),
            user_ids=self.users.ids,
            item_ids=ids if ids.dtype.kind in "iu" else ids.astype(str),
            item_tokens=self.item_tokens,
            titles=np.array(self.titles, dtype=str),
            user_profile_tokens=self.user_profile_tokens,
            user_profile_weights=self.user_profile_weights,
            rated_indptr=self.rated_indptr,
            rated_indices=self.rated_indices,
            **({} if self.item_image_rows is None else {"item_image_rows": self.item_image_rows}),
        )
        atomic.save_npz(model_dir / MODEL_ARRAYS, **arrays)
        settings = {
            **self.settings,
            "format_version": FORMAT_VERSION,
            "model": "dssm",
            "num_users": len(self.users),
            "num_items": len(self.item_ids),
            "vocabulary_size": len(self.vocabulary.words),
        }
        atomic.write_json(model_dir / MODEL_SETTINGS, settings, sort_keys=True)

    @classmethod
    def load(cls, model_dir: Path, settings: dict | None = None) -> DssmModel:
        settings = settings or json.loads((model_dir / MODEL_SETTINGS).read_text())
        if settings.get("format_version") != FORMAT_VERSION:
            version = settings.get("format_version")
            raise ValueError(f"{model_dir / MODEL_SETTINGS}: unsupported format_version {version}")
        with np.load(model_dir / MODEL_ARRAYS, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
        model = cls(
            towers=Towers.from_arrays({n[len("param_") :]: v for n, v in arrays.items() if n.startswith("param_")}),
            vocabulary=Vocabulary(arrays["vocabulary"].tolist()),
            users=IdIndex(arrays["user_ids"]),
            user_profile_tokens=arrays["user_profile_tokens"],
            user_profile_weights=arrays["user_profile_weights"],
            item_ids=arrays["item_ids"].tolist(),
            item_tokens=arrays["item_tokens"],
            titles=arrays["titles"].tolist(),
            rated_indptr=arrays["rated_indptr"],
            rated_indices=arrays["rated_indices"],
            settings=settings,
            journal=journal_path(model_dir),
            item_image_rows=arrays.get("item_image_rows"),
        )
        model.sync()  # a worker started after items were added sees them too
        return model


def image_array(image: Any, size: int) -> np.ndarray:
    """An item's image as sent (nested lists of numbers, any shape): flat float32 of `size` numbers. Raises
    ValueError otherwise."""
    try:
        flat = np.asarray(image, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError("image must be an array of numbers") from None
    if flat.size != size:
        raise ValueError(f"image has {flat.size} numbers; this model's images have {size}")
    if not np.isfinite(flat).all():
        raise ValueError("image holds NaN or infinite numbers")
    return flat.astype(np.float32)


def journal_path(model_dir: Path) -> Path:
    """One journal per model (its directory and the arrays' modification time), in BYOC_DSSM_JOURNAL_DIR."""
    arrays = model_dir / MODEL_ARRAYS
    identity = f"{arrays.resolve()}:{arrays.stat().st_mtime_ns}".encode()
    directory = Path(os.environ.get("BYOC_DSSM_JOURNAL_DIR") or tempfile.gettempdir())
    return directory / f"mxnet-mf-dssm-{hashlib.sha256(identity).hexdigest()[:16]}.jsonl"
