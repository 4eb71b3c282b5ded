"""Serving settings, read from the environment once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .multi_model import MULTI_MODEL_ENV
from .paths import SageMakerPaths


@dataclass(frozen=True)
class ServingSettings:
    port: int = 8080
    workers: int = 1
    timeout: int = 60
    max_payload_mb: float = 6.0
    batch_strategy: str = "MULTI_RECORD"
    max_concurrent_transforms: int | None = None
    worker_class: str = "gthread"
    threads: int = 4
    user: str | None = None  # workers drop to this user when started as root
    model_dir: Path = Path("/opt/ml/model")
    family: str | None = None  # BYOC_SERVE: module with the family's default handlers
    program: str | None = None  # SAGEMAKER_PROGRAM: a user inference script
    submit_directory: str | None = None
    default_accept: str = "application/json"
    # SageMaker's InvokeEndpoint answers at most 6 MB; a batch transform's records may be as large as its
    # MaxPayloadInMB. 0: no limit.
    max_response_mb: float = 6.0
    multi_model: bool = False  # SAGEMAKER_MULTI_MODEL=true: models loaded and unloaded by name (multi_model.py)

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)

    @property
    def max_response_bytes(self) -> int | None:
        return int(self.max_response_mb * 1024 * 1024) or None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServingSettings:
        env = os.environ if environ is None else environ
        cores = os.cpu_count() or 1
        workers = int(env.get("SAGEMAKER_MODEL_SERVER_WORKERS") or cores)
        max_payload_mb = float(env.get("SAGEMAKER_MAX_PAYLOAD_IN_MB") or 6)
        max_response_mb = env.get("BYOC_MAX_RESPONSE_MB")
        return cls(
            port=int(env.get("SAGEMAKER_BIND_TO_PORT") or 8080),
            workers=max(1, workers),
            timeout=int(env.get("SAGEMAKER_MODEL_SERVER_TIMEOUT") or 60),
            max_payload_mb=max_payload_mb,
            max_response_mb=float(max_response_mb) if max_response_mb else max(6.0, max_payload_mb),
            batch_strategy=env.get("SAGEMAKER_BATCH_STRATEGY") or "MULTI_RECORD",
            max_concurrent_transforms=int(env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"])
            if env.get("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS")
            else None,
            worker_class=env.get("BYOC_WORKER_CLASS") or "gthread",
            threads=int(env.get("BYOC_WORKER_THREADS") or 4),
            user=env.get("BYOC_SERVE_USER") or None,
            model_dir=Path(env.get("SM_MODEL_DIR") or SageMakerPaths.from_env().model_dir),
            family=env.get("BYOC_SERVE") or None,
            program=env.get("SAGEMAKER_PROGRAM") or None,
            submit_directory=env.get("SAGEMAKER_SUBMIT_DIRECTORY") or None,
            default_accept=env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "application/json",
            multi_model=(env.get(MULTI_MODEL_ENV) or "").strip().lower() == "true",
        )
