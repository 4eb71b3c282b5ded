"""A SageMaker /opt/ml config tree used by the toolkit-compatibility test and its golden file."""

from __future__ import annotations

import json
from pathlib import Path

HYPERPARAMETERS = {
    "epochs": "10",
    "learning_rate": "0.05",
    "optimizer": '"adam"',
    "layers": "[64, 32]",
    "plain": "hello",
    "sagemaker_program": '"train.py"',
    "sagemaker_submit_directory": '"/opt/ml/code"',
    "sagemaker_container_log_level": "20",
    "sagemaker_parameter_server_enabled": "true",
    "sagemaker_region": '"us-east-1"',
}
INPUT_DATA = {
    "train": {"ContentType": "text/csv", "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"},
    "test": {"TrainingInputMode": "Pipe", "S3DistributionType": "ShardedByS3Key"},
}
RESOURCES = {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"], "network_interface_name": "eth1"}


def write(base: Path) -> Path:
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(HYPERPARAMETERS))
    (config / "inputdataconfig.json").write_text(json.dumps(INPUT_DATA))
    (config / "resourceconfig.json").write_text(json.dumps(RESOURCES))
    return base
