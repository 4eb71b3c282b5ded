"""The training job as SageMaker describes it in /opt/ml/input/config, read once into typed settings,
and the SM_* environment that the sagemaker-training toolkit exports for user code."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import hyperparameters as hp
from .errors import TrainingError
from .paths import SageMakerPaths

# sagemaker_* keys that the toolkit consumes itself and leaves out of SM_FRAMEWORK_PARAMS.
TOOLKIT_KEYS = frozenset(
    {
        "sagemaker_program",
        "sagemaker_submit_directory",
        "sagemaker_enable_cloudwatch_metrics",
        "sagemaker_region",
        "sagemaker_container_log_level",
        "sagemaker_job_name",
        "default_user_module_name",
        "_tuning_objective_metric",
        "sagemaker_s3_output",
    }
)


@dataclass(frozen=True)
class Channel:
    name: str
    path: Path
    content_type: str | None = None
    input_mode: str = "File"  # File | Pipe | FastFile
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def is_pipe(self) -> bool:
        return self.input_mode == "Pipe"

    def pipe_path(self, epoch: int) -> Path:
        """Pipe mode: SageMaker streams each epoch of a channel through a FIFO named <channel>_<epoch>."""
        return self.path.parent / f"{self.name}_{epoch}"


@dataclass(frozen=True)
class TrainingEnv:
    paths: SageMakerPaths
    hyperparameters: dict[str, Any]  # user hyperparameters, decoded
    framework_params: dict[str, Any]  # every sagemaker_* key, decoded
    channels: dict[str, Channel]
    hosts: list[str]
    current_host: str
    network_interface_name: str
    resource_config: dict[str, Any]
    input_data_config: dict[str, Any]
    raw_hyperparameters: dict[str, Any]
    checkpoint_dir: Path
    checkpoint_s3_uri: str | None
    num_cpus: int
    num_gpus: int

    @classmethod
    def load(cls, paths: SageMakerPaths | None = None) -> TrainingEnv:
        paths = paths or SageMakerPaths.from_env()
        raw_hps = _read_json(paths.config_dir / "hyperparameters.json", default={})
        decoded = hp.decode_all(raw_hps)
        user, framework = hp.split_framework(decoded)
        data_config = _read_json(paths.config_dir / "inputdataconfig.json", default={})
        resource = _read_json(paths.config_dir / "resourceconfig.json", default={})
        if not resource:
            # Outside SageMaker (plain `docker run ... train`), behave as a single host.
            resource = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
        checkpoint = _read_json(paths.config_dir / "checkpointconfig.json", default={})
        channels = {
            name: Channel(
                name=name,
                path=paths.channel_dir(name),
                content_type=cfg.get("ContentType"),
                input_mode=cfg.get("TrainingInputMode", "File"),
                config=cfg,
            )
            for name, cfg in data_config.items()
        }
        hosts = list(resource.get("hosts") or [resource.get("current_host", "algo-1")])
        return cls(
            paths=paths,
            hyperparameters=user,
            framework_params=framework,
            channels=channels,
            hosts=hosts,
            current_host=resource.get("current_host", hosts[0]),
            network_interface_name=resource.get("network_interface_name", "eth0"),
            resource_config=resource,
            input_data_config=data_config,
            raw_hyperparameters=raw_hps,
            checkpoint_dir=Path(checkpoint.get("LocalPath") or paths.default_checkpoint_dir),
            checkpoint_s3_uri=checkpoint.get("S3Uri"),
            num_cpus=os.cpu_count() or 1,
            num_gpus=count_gpus(),
        )

    @property
    def is_master(self) -> bool:
        """Only hosts[0] writes the model in a multi-host job."""
        return self.current_host == self.hosts[0]

    @property
    def host_rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def program(self) -> str | None:
        """The user entry point for script mode, from SAGEMAKER_PROGRAM or the sagemaker_program hyperparameter."""
        return os.environ.get("SAGEMAKER_PROGRAM") or self.framework_params.get("sagemaker_program") or None

    @property
    def submit_directory(self) -> str | None:
        return os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY") or self.framework_params.get("sagemaker_submit_directory")

    def channel(self, name: str, *, required: bool = True) -> Channel | None:
        """A channel by name; a missing required channel is a user error that names what was given."""
        if name in self.channels:
            return self.channels[name]
        directory = self.paths.channel_dir(name)
        if directory.is_dir():  # data placed without an inputdataconfig entry (plain docker run)
            return Channel(name=name, path=directory)
        if required:
            given = ", ".join(sorted(self.channels)) or "none"
            raise TrainingError(f"Channel '{name}' is required but was not provided (channels given: {given})")
        return None

    def user_args(self) -> list[str]:
        """Hyperparameters as `--name value` arguments, sorted, the way the toolkit passes them to scripts."""
        args: list[str] = []
        for key in sorted(self.hyperparameters):
            value = self.hyperparameters[key]
            args.append(f"--{key}" if len(key) > 1 else f"-{key}")
            if isinstance(value, dict):
                args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
            else:
                args.append(value if isinstance(value, str) else json.dumps(value))
        return args

    def sm_environment(self) -> dict[str, str]:
        """The SM_* variables of the sagemaker-training toolkit (same names, same encodings)."""
        module = self.program
        module_name = module[:-3] if module and module.endswith(".py") else module
        group = self.resource_config.get("current_group_name", "homogeneousCluster")
        groups = self.resource_config.get("instance_groups", [])
        values: dict[str, Any] = {
            "hosts": self.hosts,
            "network_interface_name": self.network_interface_name,
            "hps": self.hyperparameters,
            "user_entry_point": module,
            "framework_params": {k: v for k, v in self.framework_params.items() if k not in TOOLKIT_KEYS},
            "resource_config": self.resource_config,
            "input_data_config": self.input_data_config,
            "output_data_dir": str(self.paths.output_data_dir),
            "channels": sorted(self.channels),
            "current_host": self.current_host,
            "current_instance_type": self.resource_config.get("current_instance_type", "local"),
            "current_instance_group": group,
            "current_instance_group_hosts": next(
                (g.get("hosts", []) for g in groups if g.get("instance_group_name") == group), []
            ),
            "instance_groups": [g["instance_group_name"] for g in groups if "instance_group_name" in g],
            "instance_groups_dict": {g["instance_group_name"]: g for g in groups if "instance_group_name" in g},
            "distribution_instance_groups": self.framework_params.get("sagemaker_distribution_instance_groups")
            or [group],
            "is_hetero": len(groups) > 1,
            "module_name": module_name,
            "log_level": self.framework_params.get("sagemaker_container_log_level", logging.INFO),
            "framework_module": os.environ.get("SAGEMAKER_TRAINING_MODULE"),
            "input_dir": str(self.paths.input_dir),
            "input_config_dir": str(self.paths.config_dir),
            "output_dir": str(self.paths.output_dir),
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "num_neurons": 0,
            "model_dir": str(self.paths.model_dir),
            "module_dir": str(self.submit_directory or self.paths.code_dir),
            "user_args": self.user_args(),
            "output_intermediate_dir": str(self.paths.output_intermediate_dir),
        }
        for name in self.channels:
            values[f"channel_{name}"] = str(self.paths.channel_dir(name))
        for key, value in self.hyperparameters.items():
            values[f"hp_{key}"] = value
        return {f"SM_{key.upper()}": _env_value(value) for key, value in values.items()}


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _read_json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise TrainingError(f"{path.name} is not valid JSON: {err}") from None


def count_gpus() -> int:
    """GPUs visible to this container, as the toolkit counts them (nvidia-smi --list-gpus)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))
