"""Fixtures of the gluon-cnn unit tests: the shipped MNIST sample and a SageMaker /opt/ml tree in tmp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "sample"


@pytest.fixture
def opt_ml(tmp_path, monkeypatch):
    """An /opt/ml tree with the MNIST sample as train/test channels; returns a function to write hyperparameters."""
    base = tmp_path / "opt_ml"
    config = base / "input" / "config"
    config.mkdir(parents=True)
    for channel, split in (("train", "train"), ("test", "t10k")):
        target = base / "input" / "data" / channel
        target.mkdir(parents=True)
        for source in (SAMPLE / "mnist").glob(f"{split}-*"):
            (target / source.name).write_bytes(source.read_bytes())
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {}, "test": {}}))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))

    def configure(hyperparameters: dict) -> Path:
        (config / "hyperparameters.json").write_text(json.dumps({k: json.dumps(v) for k, v in hyperparameters.items()}))
        return base

    return configure
