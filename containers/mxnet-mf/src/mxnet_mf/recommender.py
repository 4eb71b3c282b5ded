"""The trained model as numpy arrays: ratings, top-k recommendations and similar items, vectorised.

Serving and training-time evaluation both use this class, so the validation RMSE in the training log is
the RMSE of exactly what the endpoint answers. It needs no MXNet: the networks are two or three matrix
products, and a serving worker starts in milliseconds without importing the framework.
Saved as model.npz (arrays only, loaded with allow_pickle=False) + model.json (settings), each written
to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from byoc_runtime import atomic

from .data import IdIndex

MODEL_ARRAYS = "model.npz"
MODEL_SETTINGS = "model.json"
FORMAT_VERSION = 1
# Deep models score all items of a user through the MLP: bound the (users x items x units) temporary.
SCORE_CHUNK_ELEMENTS = 1 << 23


@dataclass
class Recommender:
    kind: str  # mf | deep | mlp | object2vec
    users: IdIndex
    items: IdIndex
    params: dict[str, np.ndarray]
    min_rating: float
    max_rating: float
    mean_rating: float
    titles: np.ndarray | None = None  # per item index, "" when unknown
    rated_indptr: np.ndarray | None = None  # CSR: the items each user rated in training
    rated_indices: np.ndarray | None = None
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = {name: value.astype(np.float32) for name, value in self.params.items()}
        self.user_embedding, self.item_embedding = p["user_embedding"], p["item_embedding"]
        self.user_bias, self.item_bias = p.get("user_bias"), p.get("item_bias")
        self.global_bias = float(p["global_bias"].ravel()[0]) if "global_bias" in p else self.mean_rating
        # Object2Vec: the towers (encoders, comparator, MLP) where trained, the biased-MF core where trained.
        self.classes = int(self.settings["object2vec"]["num_classes"]) if self.kind == "object2vec" else 1
        self.object2vec = Object2VecForward(p, self.settings["object2vec"]) if "user_encoder_weight" in p else None
        if self.object2vec is not None:
            self.item_unit = _unit_rows(self.object2vec.encode_items(np.arange(len(self.item_embedding))))
            return
        factors = self.user_embedding.shape[1]
        hidden = sorted(
            (int(name.split("_")[1]), name) for name in p if name.startswith("hidden_") and name.endswith("_weight")
        )
        # MXNet's Dense is x @ W.T + b; the first layer sees concat(p_u, q_i), so split it per side and
        # precompute the item half once: scoring all items of a user is then an add, not a matmul per pair.
        self.layers = [(p[name].T.copy(), p[name.replace("_weight", "_bias")]) for _, name in hidden]
        self.output = (p["output_weight"].T.copy(), p["output_bias"]) if "output_weight" in p else None
        if self.layers:
            first_weight, first_bias = self.layers[0]
            self.user_first = first_weight[:factors]
            self.item_projection = self.item_embedding @ first_weight[factors:] + first_bias
        self.item_unit = _unit_rows(self.item_embedding)

    @property
    def classifier(self) -> bool:
        return self.classes > 1

    @property
    def _scored_per_pair(self) -> bool:
        """Object2Vec towers or softmax: scored pair by pair (a regression core scores as mf does)."""
        return self.kind == "object2vec" and (self.object2vec is not None or self.classifier)

    def encode_users(self, users: np.ndarray) -> np.ndarray:
        """The user tower's output (an Object2Vec classifier: the encoder's; else the embedding row)."""
        if self.object2vec is not None:
            return self.object2vec.encode_users(users)
        return self.user_embedding[users]

    def encode_items(self, items: np.ndarray) -> np.ndarray:
        if self.object2vec is not None:
            return self.object2vec.encode_items(items)
        return self.item_embedding[items]

    # ------------------------------------------------------------------ scores
    def _offsets(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        offset = np.full(len(users), self.global_bias, dtype=np.float32)
        if self.user_bias is not None:
            offset += self.user_bias[users] + self.item_bias[items]
        return offset

    def _mlp_tail(self, hidden: np.ndarray) -> np.ndarray:
        """Layers after the first (already applied, relu'd) and the output unit; (..., units) -> (...)."""
        for weight, bias in self.layers[1:]:
            hidden = np.maximum(hidden @ weight + bias, 0)
        return (hidden @ self.output[0])[..., 0] + self.output[1][0]

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Raw model output for known (user index, item index) pairs (object2vec softmax: the logits)."""
        if self._scored_per_pair:
            return self._object2vec_score(users, items)
        if self.kind in ("mf", "object2vec"):
            interaction = np.einsum("ij,ij->i", self.user_embedding[users], self.item_embedding[items])
        else:
            first = self.user_embedding[users] @ self.user_first + self.item_projection[items]
            interaction = self._mlp_tail(np.maximum(first, 0))
        return interaction + self._offsets(users, items)

    def _object2vec_score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = self.object2vec.forward(users, items) if self.object2vec is not None else None
        if self.user_bias is None:
            return out
        core = self._offsets(users, items) + np.einsum(
            "ij,ij->i", self.user_embedding[users], self.item_embedding[items]
        )
        if not self.classifier:
            return core if out is None else out + core
        logits = np.zeros((len(core), self.classes), dtype=np.float32)
        logits[:, 1] = core  # a binary classifier's core is class 1's logit over class 0's
        return logits if out is None else out + logits

    def probabilities(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """A classifier's class probabilities (len, num_classes). Index -1 (an id unseen in training) falls
        back to class 1's logit = global bias + the known side's bias (with the core), or to the training
        labels' share of class 1 (a binary classifier without it; more classes: uniform)."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        known = (users >= 0) & (items >= 0)
        if known.all():
            return _softmax(self.score(users, items))
        logits = np.zeros((len(users), self.classes), dtype=np.float32)
        logits[known] = self.score(users[known], items[known])
        u, i = users[~known], items[~known]
        if self.user_bias is None:
            if self.classes == 2:
                share = min(max(self.mean_rating, 1e-6), 1 - 1e-6)
                logits[~known, 1] = np.log(share / (1 - share))
            return _softmax(logits)
        logits[~known, 1] = self._fallback(u, i)
        return _softmax(logits)

    def _fallback(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """For pairs with an index -1 (unseen in training): the global bias + the known side's bias."""
        return (
            self.global_bias
            + np.where(users >= 0, self.user_bias[np.maximum(users, 0)], 0)
            + np.where(items >= 0, self.item_bias[np.maximum(items, 0)], 0)
        )

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ratings clipped to the training range. Index -1 (an id unseen in training) falls back to the
        known side's bias + global bias (mf, deep) or the mean rating (mlp)."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        known = (users >= 0) & (items >= 0)
        out = np.empty(len(users), dtype=np.float32)
        out[known] = self.score(users[known], items[known])
        unknown = ~known
        if unknown.any():
            if self.user_bias is None:
                out[unknown] = self.mean_rating
            else:
                out[unknown] = self._fallback(users[unknown], items[unknown])
        return np.clip(out, self.min_rating, self.max_rating)

    def score_all_items(self, users: np.ndarray) -> np.ndarray:
        """(len(users), num_items) raw scores: one matrix product for mf, chunked MLP for deep/mlp and
        object2vec (a softmax classifier: the probability of the highest class, "liked")."""
        if self._scored_per_pair:
            return self._object2vec_all_items(users)
        if self.kind in ("mf", "object2vec"):
            scores = self.user_embedding[users] @ self.item_embedding.T
        else:
            num_items = len(self.item_embedding)
            per_chunk = max(1, SCORE_CHUNK_ELEMENTS // (num_items * self.item_projection.shape[1]))
            scores = np.empty((len(users), num_items), dtype=np.float32)
            for start in range(0, len(users), per_chunk):
                chunk = users[start : start + per_chunk]
                first = (self.user_embedding[chunk] @ self.user_first)[:, None, :] + self.item_projection[None]
                scores[start : start + per_chunk] = self._mlp_tail(np.maximum(first, 0))
        if self.user_bias is not None:
            scores += self.user_bias[users][:, None] + self.item_bias[None, :]
        return scores + self.global_bias

    def _object2vec_all_items(self, users: np.ndarray) -> np.ndarray:
        num_items = len(self.item_embedding)
        per_chunk = max(1, SCORE_CHUNK_ELEMENTS // (num_items * (self.object2vec.width if self.object2vec else 8)))
        width = self.classes
        scores = np.empty((len(users), num_items), dtype=np.float32)
        for start in range(0, len(users), per_chunk):
            chunk = users[start : start + per_chunk]
            pair_users = np.repeat(chunk, num_items)
            pair_items = np.tile(np.arange(num_items), len(chunk))
            out = self.score(pair_users, pair_items)
            out = _softmax(out)[:, width - 1] if width > 1 else out
            scores[start : start + len(chunk)] = out.reshape(len(chunk), num_items)
        return scores

    # ------------------------------------------------------------------ top-k
    def rated_mask_indices(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) index pairs of the training ratings of each requested user, for masking."""
        if self.rated_indptr is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        starts, ends = self.rated_indptr[users], self.rated_indptr[users + 1]
        counts = ends - starts
        rows = np.repeat(np.arange(len(users)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.rated_indices[np.repeat(starts, counts) + within]

    def recommend(self, users: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores per user (descending); excluded rows' rated items score -inf."""
        users = np.asarray(users, dtype=np.int64)
        scores = self.score_all_items(users)
        if exclude is not None and exclude.any():
            rows, columns = self.rated_mask_indices(users)
            keep = exclude[rows]
            scores[rows[keep], columns[keep]] = -np.inf
        return top_k(scores, k)

    def similar(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items by cosine similarity of item embeddings (the item itself excluded)."""
        items = np.asarray(items, dtype=np.int64)
        similarity = self.item_unit[items] @ self.item_unit.T
        similarity[np.arange(len(items)), items] = -np.inf
        return top_k(similarity, k)

    def popular(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k items with most training ratings (the fallback for a user unseen in training); score =
        the item's predicted rating for an average user (global + item bias, or the mean rating)."""
        num_items = len(self.item_embedding)
        counts = np.bincount(self.rated_indices, minlength=num_items) if self.rated_indices is not None else None
        bias = self.item_bias if self.item_bias is not None else np.zeros(num_items, dtype=np.float32)
        order = np.lexsort((-bias, -counts)) if counts is not None else np.argsort(-bias, kind="stable")
        top = order[: min(k, num_items)]
        base = self.global_bias if self.item_bias is not None else self.mean_rating
        return top, np.clip(base + bias[top], self.min_rating, self.max_rating)

    def title(self, item: int) -> str | None:
        if self.titles is None or not self.titles[item]:
            return None
        return str(self.titles[item])

    # ------------------------------------------------------------------ files
    def save(self, model_dir: Path) -> None:
        model_dir.mkdir(parents=True, exist_ok=True)
        arrays = {f"param_{name}": value for name, value in self.params.items()}
        arrays["user_ids"], arrays["item_ids"] = self.users.ids, self.items.ids
        if self.titles is not None:
            arrays["titles"] = self.titles
        if self.rated_indptr is not None:
            arrays["rated_indptr"], arrays["rated_indices"] = self.rated_indptr, self.rated_indices
        atomic.save_npz(model_dir / MODEL_ARRAYS, **arrays)
        settings = {
            **self.settings,
            "format_version": FORMAT_VERSION,
            "model": self.kind,
            "min_rating": self.min_rating,
            "max_rating": self.max_rating,
            "mean_rating": self.mean_rating,
            "num_users": len(self.users),
            "num_items": len(self.items),
        }
        atomic.write_json(model_dir / MODEL_SETTINGS, settings, sort_keys=True)

    @classmethod
    def load(cls, model_dir: Path) -> Recommender:
        settings = json.loads((model_dir / MODEL_SETTINGS).read_text())
        if settings.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{model_dir / MODEL_SETTINGS}: unsupported format_version {settings.get('format_version')}"
            )
        with np.load(model_dir / MODEL_ARRAYS, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
        return cls(
            kind=settings["model"],
            users=IdIndex(arrays["user_ids"]),
            items=IdIndex(arrays["item_ids"]),
            params={name[len("param_") :]: value for name, value in arrays.items() if name.startswith("param_")},
            min_rating=float(settings["min_rating"]),
            max_rating=float(settings["max_rating"]),
            mean_rating=float(settings["mean_rating"]),
            titles=arrays.get("titles"),
            rated_indptr=arrays.get("rated_indptr"),
            rated_indices=arrays.get("rated_indices"),
            settings=settings,
        )


class Object2VecForward:
    """networks.Object2VecNet's classifier in numpy: towers (embedding -> linear projection), comparator, MLP,
    logits."""

    ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0), "linear": lambda x: x}

    def __init__(self, p: dict[str, np.ndarray], settings: dict):
        self.user_embedding, self.item_embedding = p["user_embedding"], p["item_embedding"]
        self.user_encoder = (p["user_encoder_weight"].T.copy(), p["user_encoder_bias"])
        self.item_encoder = (p["item_encoder_weight"].T.copy(), p["item_encoder_bias"])
        count = sum(1 for name in p if name.startswith("hidden_") and name.endswith("_weight"))
        self.layers = [(p[f"hidden_{n}_weight"].T.copy(), p[f"hidden_{n}_bias"]) for n in range(count)]
        self.output = (p["output_weight"].T.copy(), p["output_bias"])
        self.comparators = list(settings["comparators"])
        self.activation = self.ACTIVATIONS[settings["mlp_activation"]]
        self.classes = int(settings["num_classes"])
        first = self.layers[0][0] if self.layers else self.output[0]
        self.width = first.shape[0] + (first.shape[1] if self.layers else 0)  # floats per pair, for chunking

    def encode_users(self, users: np.ndarray) -> np.ndarray:
        weight, bias = self.user_encoder
        return self.user_embedding[users] @ weight + bias

    def encode_items(self, items: np.ndarray) -> np.ndarray:
        weight, bias = self.item_encoder
        return self.item_embedding[items] @ weight + bias

    def forward(self, users, items) -> np.ndarray:
        e0, e1 = self.encode_users(users), self.encode_items(items)
        parts = []
        for name in self.comparators:
            if name == "hadamard":
                parts.append(e0 * e1)
            elif name == "concat":
                parts += [e0, e1]
            else:
                parts.append(np.abs(e0 - e1))
        hidden = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        for weight, bias in self.layers:
            hidden = self.activation(hidden @ weight + bias)
        out = hidden @ self.output[0] + self.output[1]
        return out if self.classes > 1 else out[:, 0]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def rated_csr(users: np.ndarray, items: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user, the (unique) items rated in training: CSR indptr and indices."""
    pairs = np.unique(np.stack([users, items], axis=1), axis=0)
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs[:, 0], minlength=num_users), out=indptr[1:])
    return indptr, pairs[:, 1].astype(np.int64)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best columns (descending) and their scores; -inf columns are never among them
    unless the row has fewer than k finite scores (callers drop those)."""
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.argsort(-candidate_scores, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(candidate_scores, order, axis=1)
