"""Quality metrics as the built-in algorithm names and logs them.

The built-in prints `#test_score (algo-1) : ('binary_classification_accuracy', 0.98)` and
`#quality_metric: host=algo-1, test binary_classification_accuracy <score>=0.98`; we print both, plus the
runtime's `#metric: test:binary_classification_accuracy=0.98` line, and metrics.json keys `test:<name>`.
"""

from __future__ import annotations

import logging

import numpy as np

from byoc_runtime.metrics import log_metric

log = logging.getLogger("fm_algo")


def binary_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    probabilities, labels = np.asarray(probabilities, np.float64), np.asarray(labels, np.float64)
    predicted = probabilities >= 0.5
    actual = labels == 1
    tp = int(np.sum(predicted & actual))
    fp = int(np.sum(predicted & ~actual))
    fn = int(np.sum(~predicted & actual))
    clipped = np.clip(probabilities, 1e-12, 1 - 1e-12)
    cross_entropy = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    return {
        "binary_classification_accuracy": float(np.mean(predicted == actual)),
        "binary_classification_cross_entropy": float(cross_entropy),
        "binary_f_1.000": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0,
    }


def regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    errors = np.asarray(predictions, np.float64) - np.asarray(labels, np.float64)
    return {"rmse": float(np.sqrt(np.mean(errors * errors))), "absolute_loss": float(np.mean(np.abs(errors)))}


def compute(predictor_type: str, scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if predictor_type == "binary_classifier":
        return binary_metrics(scores, labels)
    return regression_metrics(scores, labels)


def report(metrics: dict[str, float], channel: str, host: str, **context) -> dict[str, float]:
    """Log every metric in the built-in's two formats and ours; returns them keyed `<channel>:<name>`."""
    where = "".join(f"{k}={v}, " for k, v in context.items())
    for name, value in metrics.items():
        if channel == "test":
            print(f"#test_score ({host}) : ('{name}', {value})", flush=True)
        print(f"#quality_metric: host={host}, {where}{channel} {name} <score>={value}", flush=True)
        log_metric(f"{channel}:{name}", value, **context)
    return {f"{channel}:{name}": value for name, value in metrics.items()}
