"""Training metrics: a regex-friendly log line per value and /opt/ml/output/data/metrics.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from . import atomic
from .paths import SageMakerPaths

CHECKPOINTS_KEY = "checkpoints"
# What the runtime learned during the job (e.g. the checkpoint it resumed from), added to metrics.json.
_runtime_facts: dict[str, Any] = {}

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


def record_checkpoint(store: str, outcome: dict[str, Any]) -> None:
    """Note how a checkpoint store resumed ({"resumed_from": step, "skipped": [...]}); write_metrics adds it
    to metrics.json under "checkpoints" -> store name, unless the family wrote that key itself."""
    _runtime_facts.setdefault(CHECKPOINTS_KEY, {})[store] = outcome


def runtime_facts() -> dict[str, Any]:
    return json.loads(json.dumps(_runtime_facts))


def write_metrics(metrics: dict[str, Any], paths: SageMakerPaths | None = None) -> Path:
    """metrics.json in /opt/ml/output/data, written atomically (never half a file)."""
    paths = paths or SageMakerPaths.from_env()
    try:
        paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(paths.output_data_dir)) from err
    target = paths.output_data_dir / "metrics.json"
    merged = {**runtime_facts(), **metrics}
    atomic.write_text(target, json.dumps(merged, indent=2, sort_keys=True, default=float) + "\n")
    return target
