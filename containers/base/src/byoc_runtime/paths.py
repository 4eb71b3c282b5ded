"""Where SageMaker puts things. Rooted at SAGEMAKER_BASE_DIR (default /opt/ml) so tests can use a tmp tree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SageMakerPaths:
    base: Path

    @classmethod
    def from_env(cls) -> SageMakerPaths:
        return cls(Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")))

    @property
    def input_dir(self) -> Path:
        return self.base / "input"

    @property
    def config_dir(self) -> Path:
        return self.base / "input" / "config"

    @property
    def data_dir(self) -> Path:
        return self.base / "input" / "data"

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.base / "output" / "data"

    @property
    def output_intermediate_dir(self) -> Path:
        return self.base / "output" / "intermediate"

    @property
    def failure_file(self) -> Path:
        return self.base / "output" / "failure"

    @property
    def code_dir(self) -> Path:
        return self.base / "code"

    @property
    def default_checkpoint_dir(self) -> Path:
        return self.base / "checkpoints"

    def channel_dir(self, channel: str) -> Path:
        return self.data_dir / channel
