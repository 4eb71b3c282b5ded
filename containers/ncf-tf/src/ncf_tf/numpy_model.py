"""NeuMF / GMF / MLP (model.py) in numpy, for the serve-only image (no TensorFlow): the trainer exports the
layers' weights beside the SavedModel (<model>/ncf/weights.npz); this module scores (user, item) index pairs
with them as the SavedModel's serving_default does (float32, equal to 1e-6).

weights.npz holds "<layer name>:<i>" for each weight i of each layer that has any (embeddings gmf_user,
gmf_item, mlp_user, mlp_item; Dense mlp_dense_<depth> and prediction: kernel, bias), and "version": the
SavedModel version they belong to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from byoc_runtime import atomic

WEIGHTS = "weights.npz"


def export(model, path: Path, version: str) -> None:
    """A Keras model's weights, by layer name, into `path` (written under a temporary name, then renamed)."""
    arrays = {f"{layer.name}:{i}": np.asarray(w) for layer in model.layers for i, w in enumerate(layer.get_weights())}
    atomic.save_npz(path, version=np.asarray(int(version)), **arrays)


class NeuMF:
    """The forward pass: GMF tower (user * item embeddings), MLP tower (concatenated embeddings through ReLU
    layers), their concatenation through the sigmoid output."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.version = int(arrays["version"])
        get = arrays.get
        self.gmf = (get("gmf_user:0"), get("gmf_item:0")) if "gmf_user:0" in arrays else None
        self.mlp = (get("mlp_user:0"), get("mlp_item:0")) if "mlp_user:0" in arrays else None
        dense = [k.split(":")[0] for k in arrays if k.startswith("mlp_dense_") and k.endswith(":0")]
        depths = sorted(int(name.rsplit("_", 1)[1]) for name in dense)
        self.dense = [(arrays[f"mlp_dense_{d}:0"], arrays[f"mlp_dense_{d}:1"]) for d in depths]
        if self.gmf is None and self.mlp is None or "prediction:0" not in arrays:
            raise ValueError(f"{WEIGHTS} holds no NCF tower or no prediction layer (keys: {sorted(arrays)})")
        self.kernel, self.bias = arrays["prediction:0"], arrays["prediction:1"]
        self.n_users = len((self.gmf or self.mlp)[0])
        self.n_items = len((self.gmf or self.mlp)[1])

    @classmethod
    def load(cls, path: Path) -> NeuMF:
        with np.load(path, allow_pickle=False) as saved:
            return cls({name: saved[name] for name in saved.files})

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        towers = []
        if self.gmf is not None:
            towers.append(self.gmf[0][users] * self.gmf[1][items])
        if self.mlp is not None:
            x = np.concatenate([self.mlp[0][users], self.mlp[1][items]], axis=1)
            for kernel, bias in self.dense:
                x = np.maximum(x @ kernel + bias, 0)
            towers.append(x)
        joined = towers[0] if len(towers) == 1 else np.concatenate(towers, axis=1)
        logits = (joined @ self.kernel + self.bias).reshape(-1)
        with np.errstate(over="ignore"):  # exp(88+) is inf: the score is then 0, as TensorFlow's sigmoid says
            return (1 / (1 + np.exp(-logits))).astype(np.float32)
