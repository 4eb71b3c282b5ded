"""Train and deploy factorization machines with the SageMaker Python SDK v2.

One code path for three targets: our FM image or the built-in algorithm (`image="builtin"`, resolved with
`image_uris.retrieve("factorization-machines", region)`), in SDK local mode (docker on this machine,
file:// data, no AWS account) or on SageMaker (data uploaded to S3 with boto3). Requests use the course's
JSON serializer.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

RECORDIO = "application/x-recordio-protobuf"
OUR_IMAGE = "byoc-fm:latest-cpu"
BUILTIN = "builtin"
DEFAULT_REGION = "us-east-1"
LOCAL_ROLE = "arn:aws:iam::111111111111:role/fm-client-local-mode"  # never checked in local mode
TELEMETRY_OFF = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def region_name(region: str | None = None) -> str:
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def resolve_image(image: str | None, region: str | None = None) -> str:
    """'builtin' -> the built-in algorithm's ECR image for the region; None -> our FM image; else as given."""
    if image == BUILTIN:
        from sagemaker import image_uris

        return image_uris.retrieve("factorization-machines", region_name(region))
    return image or OUR_IMAGE


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def local_session(region: str | None = None, serving_port: int | None = None, container_root: str | None = None):
    """A LocalSession for local code and file:// data; static dummy credentials unless real ones are set
    (the SDK builds boto clients even in local mode, and must not wait on the EC2 metadata service)."""
    import boto3
    from sagemaker.local import LocalSession

    region = region_name(region)
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    configured = os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")
    boto_session = (
        boto3.Session(region_name=region)
        if configured
        else boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=region)
    )
    session = LocalSession(boto_session=boto_session, sagemaker_config=TELEMETRY_OFF)
    session.config = {"local": {"local_code": True, "serving_port": serving_port or _free_port()}}
    if container_root:
        session.config["local"]["container_root"] = container_root
    return session


def aws_session(region: str | None = None):
    import boto3
    import sagemaker

    return sagemaker.Session(boto3.Session(region_name=region_name(region)), sagemaker_config=TELEMETRY_OFF)


def upload_to_s3(local: str | Path, bucket: str, prefix: str, boto_session: Any = None) -> str:
    """Upload a file or every file under a directory with boto3; returns the s3:// prefix to train on."""
    import boto3

    s3 = (boto_session or boto3.Session()).client("s3")
    local = Path(local)
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"nothing to upload in {local}")
    for path in files:
        key = f"{prefix.strip('/')}/{path.relative_to(local.parent if local.is_file() else local).as_posix()}"
        s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{prefix.strip('/')}"


@dataclass
class FMLauncher:
    """fit -> deploy -> predict -> delete, locally (local=True) or on SageMaker."""

    image: str | None = None  # None: our FM image; "builtin": the built-in algorithm; or any image URI
    local: bool = True
    region: str | None = None
    role: str | None = None
    instance_type: str | None = None  # default: local, or ml.c5.xlarge on SageMaker
    bucket: str | None = None  # SageMaker: where data and models go (default: the session's default bucket)
    prefix: str = "fm-client"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fm-client-")))
    session: Any = None
    estimator: Any = None
    predictor: Any = None

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = (
                local_session(self.region, container_root=str(self.workdir)) if self.local else aws_session(self.region)
            )
        self.image_uri = resolve_image(self.image, self.region)

    @property
    def _instance_type(self) -> str:
        return self.instance_type or ("local" if self.local else "ml.c5.xlarge")

    def _role(self) -> str:
        if self.role:
            return self.role
        if self.local:
            return LOCAL_ROLE
        from sagemaker import get_execution_role

        return get_execution_role(self.session)

    def _output_path(self) -> str:
        if self.local:
            output = self.workdir / "output"
            output.mkdir(parents=True, exist_ok=True)
            return f"file://{output}"
        return f"s3://{self.bucket or self.session.default_bucket()}/{self.prefix}/output"

    def data_uri(self, source: str | Path, channel: str) -> str:
        """file:// in local mode; on SageMaker an s3:// URI as given, or local data uploaded with boto3."""
        text = str(source)
        if text.startswith(("s3://", "file://")):
            return text
        if self.local:
            return f"file://{Path(source).resolve()}"
        bucket = self.bucket or self.session.default_bucket()
        return upload_to_s3(source, bucket, f"{self.prefix}/{channel}", self.session.boto_session)

    def fit(
        self,
        hyperparameters: Mapping[str, Any],
        train: str | Path,
        test: str | Path | None = None,
        *,
        content_type: str = RECORDIO,
        instance_count: int = 1,
        input_mode: str = "File",
        wait: bool = True,
    ) -> Any:
        from sagemaker.estimator import Estimator
        from sagemaker.inputs import TrainingInput

        self.estimator = Estimator(
            image_uri=self.image_uri,
            role=self._role(),
            instance_count=instance_count,
            instance_type=self._instance_type,
            output_path=self._output_path(),
            hyperparameters=dict(hyperparameters),
            input_mode=input_mode,
            sagemaker_session=self.session,
            disable_profiler=True,
        )
        channels = {"train": TrainingInput(self.data_uri(train, "train"), content_type=content_type)}
        if test is not None:
            channels["test"] = TrainingInput(self.data_uri(test, "test"), content_type=content_type)
        self.estimator.fit(channels, wait=wait, logs="All" if wait else "None")
        return self.estimator

    def deploy(self, instance_type: str | None = None, initial_instance_count: int = 1) -> Any:
        """An endpoint for the trained model, with the course's JSON serializer and deserializer."""
        from sagemaker.deserializers import JSONDeserializer
        from sagemaker.serializers import JSONSerializer

        if self.estimator is None:
            raise RuntimeError("fit() first")
        self.predictor = self.estimator.deploy(
            initial_instance_count=initial_instance_count,
            instance_type=instance_type or ("local" if self.local else "ml.m5.large"),
            serializer=JSONSerializer(),
            deserializer=JSONDeserializer(),
        )
        return self.predictor

    def output_archive(self) -> Path | None:
        """Local mode: output.tar.gz of the last job (metrics.json, or the failure file of a failed job)."""
        if not self.local:
            return None
        archives = sorted((self.workdir / "output").glob("*/output.tar.gz"), key=lambda p: p.stat().st_mtime)
        return archives[-1] if archives else None

    def delete(self) -> None:
        if self.predictor is not None:
            try:
                self.predictor.delete_endpoint()
            finally:
                self.predictor = None
