"""Evaluate an FM endpoint: batched JSON predictions, a confusion matrix with accuracy/precision/recall/F1
(binary classifier) or RMSE (regressor), printed as a table and saved as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .recordio import as_csr, as_dense, is_sparse, num_rows

Predict = Callable[[dict], dict]


def instances(features: Any, start: int, stop: int) -> list[dict]:
    """Rows start..stop as the built-in's JSON instances: dense `features`, or sparse keys/shape/values."""
    if is_sparse(features):
        csr = as_csr(features)
        out = []
        for row in range(start, stop):
            lo, hi = csr.indptr[row], csr.indptr[row + 1]
            sparse = {
                "keys": csr.indices[lo:hi].tolist(),
                "shape": [int(csr.num_cols)],
                "values": csr.values[lo:hi].astype(float).tolist(),
            }
            out.append({"data": {"features": sparse}})
        return out
    return [{"features": row.astype(float).tolist()} for row in as_dense(features)[start:stop]]


def batches(features: Any, batch_size: int) -> Iterator[list[dict]]:
    total = num_rows(features)
    for start in range(0, total, batch_size):
        yield instances(features, start, min(start + batch_size, total))


def predict_batched(predict: Predict | Any, features: Any, batch_size: int = 500) -> list[dict]:
    """Every row's prediction, `batch_size` rows per request. `predict` is an SDK Predictor (with the JSON
    serializer) or any function from a request dict to the response dict."""
    call = predict.predict if hasattr(predict, "predict") else predict
    predictions: list[dict] = []
    for chunk in batches(features, batch_size):
        response = call({"instances": chunk})
        if isinstance(response, bytes | str):
            response = json.loads(response)
        got = response["predictions"]
        if len(got) != len(chunk):
            raise ValueError(f"asked for {len(chunk)} predictions, got {len(got)}")
        predictions.extend(got)
    return predictions


def confusion(labels: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    labels, predicted = np.asarray(labels) == 1, np.asarray(predicted) == 1
    return {
        "true_positives": int(np.sum(predicted & labels)),
        "false_positives": int(np.sum(predicted & ~labels)),
        "false_negatives": int(np.sum(~predicted & labels)),
        "true_negatives": int(np.sum(~predicted & ~labels)),
    }


def classification_report(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    counts = confusion(labels, predicted)
    tp, fp, fn, tn = (counts[k] for k in ("true_positives", "false_positives", "false_negatives", "true_negatives"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "predictor_type": "binary_classifier",
        "examples": tp + fp + fn + tn,
        **counts,
        "accuracy": (tp + tn) / max(tp + fp + fn + tn, 1),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        # the all-zeros classifier, the baseline to beat on an unbalanced "is it a 0" task
        "baseline_accuracy": (fp + tn) / max(tp + fp + fn + tn, 1),
    }


def regression_report(labels: np.ndarray, scores: np.ndarray, train_mean: float | None = None) -> dict[str, Any]:
    labels, scores = np.asarray(labels, np.float64), np.asarray(scores, np.float64)
    baseline = float(np.mean(labels)) if train_mean is None else train_mean
    return {
        "predictor_type": "regressor",
        "examples": int(labels.size),
        "rmse": math.sqrt(float(np.mean((scores - labels) ** 2))),
        "mae": float(np.mean(np.abs(scores - labels))),
        "baseline_rmse": math.sqrt(float(np.mean((baseline - labels) ** 2))),  # predicting the mean rating
    }


def report_from_predictions(
    predictions: list[dict], labels: np.ndarray, train_mean: float | None = None
) -> dict[str, Any]:
    """The classifier report when the responses carry predicted_label, else the regressor report."""
    if predictions and "predicted_label" in predictions[0]:
        predicted = np.array([p["predicted_label"] for p in predictions], dtype=np.float64)
        return classification_report(labels, predicted)
    return regression_report(labels, np.array([p["score"] for p in predictions]), train_mean)


def evaluate_endpoint(
    predict: Predict | Any, features: Any, labels: Any, batch_size: int = 500, train_mean: float | None = None
) -> dict[str, Any]:
    predictions = predict_batched(predict, features, batch_size)
    return report_from_predictions(predictions, np.asarray(labels).ravel(), train_mean)


def format_table(report: dict[str, Any], reference: dict[str, Any] | None = None) -> str:
    """A Markdown table of the report (and of a reference run beside it, e.g. the course's numbers)."""
    header = "| metric | value |" + (" reference |" if reference else "")
    lines = [header, "|---|---|" + ("---|" if reference else "")]
    for key, value in report.items():
        if key == "predictor_type":
            continue
        cells = [key, _cell(value)] + ([_cell(reference.get(key, ""))] if reference else [])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def save_report(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path
