"""The model directory: a SavedModel under <model_dir>/<version>/ (the layout TensorFlow Serving loads; the
course used version 000000001) and, beside it in <model_dir>/ncf/, what our server adds: the raw ids of the
user and item indices, each user's training items (excluded from recommendations) and the hyperparameters."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime import atomic

MODEL_VERSION = "000000001"
EXTRAS = "ncf"


@dataclass(frozen=True)
class IdMaps:
    user_ids: np.ndarray  # raw id of each user index
    item_ids: np.ndarray

    def user_index(self, raw: np.ndarray) -> np.ndarray:
        """Raw ids -> indices; -1 where unknown."""
        return _index(self.user_ids, raw)

    def item_index(self, raw: np.ndarray) -> np.ndarray:
        return _index(self.item_ids, raw)


def _index(ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    # ids are sorted (np.unique made them), so a binary search maps them back.
    where = np.minimum(np.searchsorted(ids, raw), len(ids) - 1)
    return np.where(ids[where] == raw, where, -1)


@dataclass(frozen=True)
class Extras:
    maps: IdMaps
    seen_indptr: np.ndarray  # CSR of each user's training items
    seen_items: np.ndarray
    meta: dict[str, Any]

    @property
    def n_users(self) -> int:
        return len(self.maps.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.maps.item_ids)

    def seen(self, user: int) -> np.ndarray:
        return self.seen_items[self.seen_indptr[user] : self.seen_indptr[user + 1]]


def write_extras(model_dir: Path, user_ids, item_ids, train_users, train_items, meta: dict[str, Any]) -> None:
    target = model_dir / EXTRAS
    target.mkdir(parents=True, exist_ok=True)
    # Each file under a temporary name, renamed when whole (a full disk: an OSError naming the file).
    atomic.save_npz(target / "mappings.npz", user_ids=np.asarray(user_ids), item_ids=np.asarray(item_ids))
    order = np.lexsort((train_items, train_users))
    counts = np.bincount(train_users, minlength=len(user_ids))
    atomic.save_npz(target / "seen.npz", indptr=np.r_[0, np.cumsum(counts)], items=train_items[order].astype(np.int32))
    atomic.write_json(target / "meta.json", {**meta, "version": MODEL_VERSION}, sort_keys=True)


def read_extras(model_dir: Path) -> Extras:
    target = model_dir / EXTRAS
    maps = np.load(target / "mappings.npz", allow_pickle=False)
    seen = np.load(target / "seen.npz", allow_pickle=False)
    meta = json.loads((target / "meta.json").read_text())
    return Extras(IdMaps(maps["user_ids"], maps["item_ids"]), seen["indptr"], seen["items"], meta)


def saved_model_dir(model_dir: Path) -> Path:
    """The newest numeric version directory holding a SavedModel (TF Serving's rule)."""
    versions = [p for p in model_dir.iterdir() if p.name.isdigit() and (p / "saved_model.pb").exists()]
    if not versions:
        raise FileNotFoundError(f"no <version>/saved_model.pb under {model_dir}")
    return max(versions, key=lambda p: int(p.name))


def export_dir(is_master: bool, model_dir: Path) -> tuple[Path, bool]:
    """Where this worker saves the model, and whether that copy is kept: every worker must take part in saving
    a distributed model; only hosts[0]'s copy is kept (the others go to a scratch directory, then discard())."""
    if is_master:
        return model_dir, True
    return Path(tempfile.mkdtemp(prefix="ncf-worker-export-")), False


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
