"""FM training in numpy: forward, gradients and a lazy Adam update, all on the feature rows a mini-batch
touches (O(k * nnz) per batch, never O(k * feature_dim)).

The update follows MXNet's `adam_update` (the optimizer of the built-in algorithm): the gradient is
multiplied by rescale_grad (default 1 / batch size), clipped to [-clip_gradient, clip_gradient], weight
decay is added (wd * weight), and the bias correction is folded into the learning rate.
Multi-host jobs pass a `reducer` that sums the gradients of all hosts (a dist_sync kvstore, dist.py); every
host then applies the same update to the same parameters, so they stay identical without broadcasts.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from .batch import compact
from .data import CsrData
from .model import FMModel, sigmoid
from .spec import DEFAULT_EPS, GROUPS

BETA1, BETA2 = 0.9, 0.999
SEED = 0  # every host draws the same initial parameters


class Reducer(Protocol):
    def allreduce(self, vector: np.ndarray) -> np.ndarray: ...


def initial_values(hp: dict[str, Any], shape: tuple[int, ...], group: str, rng: np.random.Generator) -> np.ndarray:
    method = hp[f"{group}_init_method"]
    if method == "normal":
        return rng.normal(0.0, hp[f"{group}_init_sigma"], size=shape).astype(np.float32)
    if method == "uniform":
        scale = hp[f"{group}_init_scale"]
        return rng.uniform(-scale, scale, size=shape).astype(np.float32)
    return np.full(shape, hp[f"{group}_init_value"], dtype=np.float32)


def loss_and_output_gradient(raw: np.ndarray, labels: np.ndarray, classifier: bool) -> tuple[float, np.ndarray]:
    """Summed loss of a batch and d(loss)/d(raw) per example (log loss on logits, or half squared error)."""
    if classifier:
        # softplus(raw) - y * raw is the cross-entropy of sigmoid(raw), stable for any raw
        loss = float(np.sum(np.logaddexp(0.0, raw) - labels * raw))
        return loss, (sigmoid(raw) - labels).astype(np.float32)
    error = (raw - labels).astype(np.float32)
    return 0.5 * float(np.dot(error, error)), error


class FMTrainer:
    def __init__(self, hp: dict[str, Any], reducer: Reducer | None = None, layout: str = "auto"):
        self.hp, self.reducer, self.layout = hp, reducer, layout
        d, k = hp["feature_dim"], hp["num_factors"]
        rng = np.random.default_rng(SEED)
        self.params = {
            "bias": initial_values(hp, (1,), "bias", rng),
            "linear": initial_values(hp, (d,), "linear", rng),
            "factors": initial_values(hp, (d, k), "factors", rng),
        }
        self.mean = {g: np.zeros_like(p) for g, p in self.params.items()}
        self.var = {g: np.zeros_like(p) for g, p in self.params.items()}
        self.steps = 0
        self.classifier = hp["predictor_type"] == "binary_classifier"
        self.eps = hp["eps"] if hp["eps"] is not None else DEFAULT_EPS

    # ------------------------------------------------------------------ state (checkpoints)
    def state(self) -> dict[str, np.ndarray]:
        arrays = {"steps": np.array(self.steps)}
        for group in GROUPS:
            arrays[f"param_{group}"] = self.params[group]
            arrays[f"mean_{group}"] = self.mean[group]
            arrays[f"var_{group}"] = self.var[group]
        return arrays

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        for group in GROUPS:
            if arrays[f"param_{group}"].shape != self.params[group].shape:
                raise ValueError(f"the checkpoint's {group} parameters have another shape")
            self.params[group] = arrays[f"param_{group}"].astype(np.float32)
            self.mean[group] = arrays[f"mean_{group}"].astype(np.float32)
            self.var[group] = arrays[f"var_{group}"].astype(np.float32)
        self.steps = int(arrays["steps"])

    def model(self) -> FMModel:
        return FMModel(
            float(self.params["bias"][0]),
            self.params["linear"].copy(),
            self.params["factors"].copy(),
            self.hp["predictor_type"],
        )

    # ------------------------------------------------------------------ training
    def gradients(self, batch: CsrData) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
        """(summed loss, touched feature ids, summed gradients: bias (1,), linear (U,), factors (U, k))."""
        rows, x = compact(batch, self.layout)
        w_rows, v_rows = self.params["linear"][rows], self.params["factors"][rows]
        xv = x.matmul(v_rows)  # (B, k)
        squares = x.matmul((v_rows * v_rows).sum(axis=1), squared=True)  # (B,)
        raw = self.params["bias"][0] + x.matmul(w_rows) + 0.5 * ((xv * xv).sum(axis=1) - squares)
        loss, g = loss_and_output_gradient(raw, batch.labels, self.classifier)
        grads = {
            "bias": np.array([g.sum()], np.float32),
            "linear": x.t_matmul(g),
            "factors": x.t_matmul(g[:, None] * xv) - v_rows * x.t_matmul(g, squared=True)[:, None],
        }
        return loss, rows, grads

    def step(self, batch: CsrData) -> float:
        """One forward/backward/update on a batch with labels; returns the batch's summed loss."""
        return self.synced_step(batch)[0]

    def synced_step(self, batch: CsrData | None) -> tuple[float, int]:
        """`step`, where a host without a batch (None: its share of the epoch is used up) still takes part in
        the allreduce with nothing to add. Returns (this host's summed loss, examples of all hosts); when no
        host had a batch (0 examples) nothing is updated: every host then knows the epoch is over."""
        if batch is None or len(batch) == 0:
            k = self.params["factors"].shape[1]
            loss, rows, grads, examples = 0.0, np.zeros(0, np.int64), self._no_gradients(k), 0
        else:
            (loss, rows, grads), examples = self.gradients(batch), len(batch)
        if self.reducer is not None:
            rows, grads, examples = self._sum_across_hosts(rows, grads, examples)
        if examples:
            self._update(rows, grads, examples)
        return loss, examples

    @staticmethod
    def _no_gradients(k: int) -> dict[str, np.ndarray]:
        return {
            "bias": np.zeros(1, np.float32),
            "linear": np.zeros(0, np.float32),
            "factors": np.zeros((0, k), np.float32),
        }

    def _sum_across_hosts(
        self, rows: np.ndarray, grads: dict[str, np.ndarray], examples: int
    ) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
        """One allreduce of [bias, examples, linear (d), touched (d), factors (d * k)] in full size."""
        d, k = self.params["factors"].shape
        vector = np.zeros(2 + 2 * d + d * k, np.float32)
        vector[0], vector[1] = grads["bias"][0], examples
        vector[2 + rows] = grads["linear"]
        vector[2 + d + rows] = 1.0
        vector[2 + 2 * d :].reshape(d, k)[rows] = grads["factors"]
        total = self.reducer.allreduce(vector)
        touched = np.flatnonzero(total[2 + d : 2 + 2 * d] > 0)
        summed = {
            "bias": total[:1].copy(),
            "linear": total[2 + touched],
            "factors": total[2 + 2 * d :].reshape(d, k)[touched],
        }
        return touched, summed, int(round(float(total[1])))

    def _update(self, rows: np.ndarray, grads: dict[str, np.ndarray], examples: int) -> None:
        self.steps += 1
        hp = self.hp
        correction = math.sqrt(1.0 - BETA2**self.steps) / (1.0 - BETA1**self.steps)
        rescale = hp["rescale_grad"] if hp["rescale_grad"] is not None else 1.0 / max(examples, 1)
        clip = hp["clip_gradient"]
        for group in GROUPS:
            index = slice(None) if group == "bias" else rows
            weight = self.params[group][index]
            grad = grads[group] * np.float32(rescale)
            if clip is not None:
                grad = np.clip(grad, -clip, clip)
            grad = grad + np.float32(hp[f"{group}_wd"]) * weight
            mean = BETA1 * self.mean[group][index] + (1.0 - BETA1) * grad
            var = BETA2 * self.var[group][index] + (1.0 - BETA2) * grad * grad
            self.mean[group][index], self.var[group][index] = mean, var
            step = hp[f"{group}_lr"] * correction * mean / (np.sqrt(var) + self.eps)
            self.params[group][index] = weight - step.astype(np.float32)
