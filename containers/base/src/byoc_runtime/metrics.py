"""Training metrics: a regex-friendly log line per value and /opt/ml/output/data/metrics.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .paths import SageMakerPaths

# Metric definitions in SageMaker match this, e.g. Regex: "#metric: validation_rmse=([0-9.]+)"
LINE_FORMAT = "#metric: {name}={value}"


def log_metric(name: str, value: float, **context: Any) -> str:
    """Print one metric line (flush: SageMaker scrapes the log as it streams)."""
    extra = "".join(f" {k}={v}" for k, v in context.items())
    line = LINE_FORMAT.format(name=name, value=_format(value)) + extra
    print(line, flush=True)
    return line


def _format(value: float) -> str:
    return f"{value:.6g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def write_metrics(metrics: dict[str, Any], paths: SageMakerPaths | None = None) -> Path:
    paths = paths or SageMakerPaths.from_env()
    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    target = paths.output_data_dir / "metrics.json"
    target.write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float) + "\n")
    return target
