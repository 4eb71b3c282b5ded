"""SageMaker Python SDK (v2) local mode for any of our images: fit -> deploy -> predict -> batch transform.

No AWS account is needed: a LocalSession with local code, file:// inputs and outputs, a region from the
environment (or us-east-1), telemetry off, static dummy credentials (so boto never asks the EC2 metadata
service), and a free port per session so parallel runs do not collide on 8080.
Everything the run creates (endpoint, model, containers, temp dirs) is removed even when a step fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

DUMMY_ROLE = "arn:aws:iam::111111111111:role/byoc-local-mode"
TELEMETRY_OFF = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_session(region: str | None = None, serving_port: int | None = None, container_root: str | None = None):
    """A LocalSession configured for local code and file:// data, with no AWS calls."""
    import boto3
    from sagemaker.local import LocalSession

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    existing = boto3.Session(region_name=region).get_credentials() if _has_configured_credentials() else None
    boto_session = (
        boto3.Session(region_name=region)
        if existing is not None
        else boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=region)
    )
    session = LocalSession(boto_session=boto_session, sagemaker_config=TELEMETRY_OFF)
    session.config = {
        "local": {
            "local_code": True,
            "serving_port": serving_port or _free_port(),
            **({"container_root": container_root} if container_root else {}),
        }
    }
    return session


def _has_configured_credentials() -> bool:
    return bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))


def file_uri(path: str | os.PathLike) -> str:
    return f"file://{Path(path).resolve()}"


def serializer_for(content_type: str):
    """The SDK serializer for a request content type (raw bytes pass through with that type)."""
    from sagemaker import serializers

    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        return serializers.JSONSerializer()
    if kind == "text/csv":
        return serializers.CSVSerializer()
    if kind == "application/jsonlines":
        return serializers.JSONLinesSerializer()
    if kind == "application/x-npy":
        return serializers.NumpySerializer()
    return serializers.IdentitySerializer(content_type=kind)


def deserializer_for(accept: str):
    from sagemaker import deserializers

    kind = accept.split(";")[0].strip().lower()
    if kind == "application/json":
        return deserializers.JSONDeserializer()
    if kind == "application/x-npy":
        return deserializers.NumpyDeserializer()
    return deserializers.BytesDeserializer(accept=kind)


@dataclass
class LocalRun:
    """One image through fit, deploy, predict and transform, in SDK local mode."""

    image: str
    instance_type: str = "local"  # or local_gpu
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="byoc-local-mode-")))
    session: Any = None
    estimator: Any = None
    model: Any = None
    predictor: Any = None
    _cleanups: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session = self.session or local_session(container_root=str(self.workdir / "containers"))
        (self.workdir / "containers").mkdir(parents=True, exist_ok=True)

    def fit(
        self,
        inputs: Mapping[str, str | os.PathLike | tuple[str | os.PathLike, str]],
        hyperparameters: Mapping[str, Any] | None = None,
        *,
        instance_count: int = 1,
        environment: Mapping[str, str] | None = None,
        input_mode: str = "File",
        checkpoint_dir: str | os.PathLike | None = None,
        entry_point: str | None = None,
        source_dir: str | os.PathLike | None = None,
        wait: bool = True,
    ) -> str:
        """Train; returns the model_data URI (file://.../model.tar.gz). inputs: channel -> path or (path, type)."""
        from sagemaker.estimator import Estimator
        from sagemaker.inputs import TrainingInput

        kwargs: dict[str, Any] = {}
        if entry_point:
            kwargs.update(entry_point=entry_point, source_dir=str(source_dir) if source_dir else None)
        if checkpoint_dir:
            kwargs.update(checkpoint_local_path=str(checkpoint_dir), checkpoint_s3_uri=file_uri(checkpoint_dir))
        self.estimator = Estimator(
            image_uri=self.image,
            role=DUMMY_ROLE,
            instance_count=instance_count,
            instance_type=self.instance_type,
            output_path=file_uri(self.workdir / "output"),
            hyperparameters=dict(hyperparameters or {}),
            environment=dict(environment or {}),
            input_mode=input_mode,
            sagemaker_session=self.session,
            disable_profiler=True,
            **kwargs,
        )
        channels = {}
        for name, spec in inputs.items():
            path, content_type = spec if isinstance(spec, tuple) else (spec, None)
            path = self._channel_dir(name, Path(path))
            channels[name] = TrainingInput(file_uri(path), content_type=content_type, input_mode=input_mode)
        self.estimator.fit(channels, wait=wait, logs="All" if wait else "None")
        return self.estimator.model_data

    def _channel_dir(self, name: str, path: Path) -> Path:
        """Local mode mounts a file:// URI's directory; a single file gets a directory of its own."""
        if path.is_dir():
            return path
        target = self.workdir / "inputs" / name
        target.mkdir(parents=True, exist_ok=True)
        (target / path.name).write_bytes(path.read_bytes())
        return target

    def deploy(
        self,
        model_data: str | None = None,
        *,
        content_type: str = "application/json",
        accept: str = "application/json",
        environment: Mapping[str, str] | None = None,
    ):
        from sagemaker.model import Model
        from sagemaker.predictor import Predictor

        self.model = Model(
            image_uri=self.image,
            predictor_cls=Predictor,  # without it, deploy() returns None
            model_data=model_data or self.estimator.model_data,
            role=DUMMY_ROLE,
            env=dict(environment or {}),
            sagemaker_session=self.session,
        )
        return self._deploy_and_wait(content_type, accept)

    def deploy_multi_model(
        self,
        model_data_prefix: str,
        *,
        content_type: str = "application/json",
        accept: str = "application/json",
        environment: Mapping[str, str] | None = None,
    ):
        """The SDK's MultiDataModel over an S3 prefix of model.tar.gz files (local mode downloads the prefix,
        so S3 must answer: the real one, or a stand-in such as moto's server through AWS_ENDPOINT_URL_S3)."""
        import uuid

        from sagemaker.multidatamodel import MultiDataModel
        from sagemaker.predictor import Predictor

        self.model = MultiDataModel(
            name=f"byoc-mme-{uuid.uuid4().hex[:8]}",
            model_data_prefix=model_data_prefix,
            image_uri=self.image,
            role=DUMMY_ROLE,
            sagemaker_session=self.session,
            predictor_cls=Predictor,
            env={"SAGEMAKER_MULTI_MODEL": "true", **(environment or {})},
        )
        return self._deploy_and_wait(content_type, accept)

    def _deploy_and_wait(self, content_type: str, accept: str):
        """Deploy self.model, register the clean-ups of what that creates, wait for InService; the predictor."""
        # wait=False: the SDK's own wait sleeps its 30 s poll interval before it first looks, which was 30 of
        # the 36 s a local deploy took; local create_endpoint returns once /ping answers, so look at once.
        self.predictor = self.model.deploy(
            initial_instance_count=1,
            instance_type=self.instance_type,
            serializer=serializer_for(content_type),
            deserializer=deserializer_for(accept),
            wait=False,
        )
        self._cleanups.append(self._delete_model)
        self._cleanups.append(self._delete_endpoint)
        name = self.predictor.endpoint_name
        self._wait_for(
            lambda: self.session.sagemaker_client.describe_endpoint(EndpointName=name),
            "EndpointStatus",
            "InService",
            ("Failed",),
            f"endpoint {name}",
            timeout=600.0,
        )
        return self.predictor

    def predict(
        self,
        data: Any,
        *,
        content_type: str | None = None,
        accept: str | None = None,
        target_model: str | None = None,
    ) -> Any:
        if content_type:
            self.predictor.serializer = serializer_for(content_type)
        if accept:
            self.predictor.deserializer = deserializer_for(accept)
        if target_model is not None:
            return self.predictor.predict(data, target_model=target_model)
        return self.predictor.predict(data)

    def transform(
        self,
        data_file: str | os.PathLike,
        *,
        content_type: str = "text/csv",
        accept: str = "application/jsonlines",
        split_type: str = "Line",
        strategy: str = "MultiRecord",
        max_payload_mb: int = 6,
    ) -> Path:
        """Batch transform over one file; returns the output file (<input name>.out)."""
        if self.model is None:
            raise RuntimeError("deploy (or create) the model before a batch transform")
        # A local transform serves the model in a container of its own on the session's port: the endpoint
        # (if any) must give the port back first.
        self._delete_endpoint()
        source = Path(data_file)
        inputs = self.workdir / "transform-input"
        inputs.mkdir(exist_ok=True)
        (inputs / source.name).write_bytes(source.read_bytes())
        output = self.workdir / "transform-output"
        transformer = self.model.transformer(
            instance_count=1,
            instance_type=self.instance_type,
            strategy=strategy,
            assemble_with="Line",
            output_path=file_uri(output),
            accept=accept,
            max_payload=max_payload_mb,
        )
        # logs=False: with logs the SDK polls CloudWatch (real AWS) even in local mode. wait=False: the SDK's
        # wait sleeps its poll interval before it first looks; a local transform job has run by the time
        # create_transform_job returns, so look at once.
        transformer.transform(
            file_uri(inputs), content_type=content_type, split_type=split_type, wait=False, logs=False
        )
        job = transformer.latest_transform_job.name
        self._wait_for(
            lambda: self.session.sagemaker_client.describe_transform_job(TransformJobName=job),
            "TransformJobStatus",
            "Completed",
            ("Failed", "Stopped"),
            f"batch transform {job}",
            timeout=3600.0,
        )
        return output / f"{source.name}.out"

    def _wait_for(
        self,
        describe,
        status_key: str,
        done: str,
        failed: tuple[str, ...],
        what: str,
        timeout: float,
        poll: float = 0.5,
    ) -> None:
        """Describe every `poll` s until `done` (the SDK's own waits sleep their interval before the first look)."""
        deadline = time.monotonic() + timeout
        while True:
            described = describe()
            status = described[status_key]
            if status == done:
                return
            if status in failed or time.monotonic() > deadline:
                reason = described.get("FailureReason", f"{status} after {timeout:.0f} s")
                raise RuntimeError(f"{what} did not reach {done}: {reason}")
            time.sleep(poll)

    def _delete_endpoint(self) -> None:
        if self.predictor is not None:
            with contextlib.suppress(Exception):
                self.predictor.delete_endpoint(delete_endpoint_config=True)
            self.predictor = None

    def _delete_model(self) -> None:
        with contextlib.suppress(Exception):
            self.model.delete_model()

    def close(self) -> None:
        while self._cleanups:
            self._cleanups.pop()()
        self._remove_compose_containers()
        import shutil

        shutil.rmtree(self.workdir, ignore_errors=True)

    def _remove_compose_containers(self) -> None:
        """Local mode runs `docker-compose up` and never `down`: the exited containers of its jobs and
        endpoints would pile up. Remove the ones whose compose project lives under our work directory."""
        with contextlib.suppress(Exception):
            import docker

            client = docker.from_env()
            for container in client.containers.list(all=True, filters={"label": "com.docker.compose.project"}):
                if container.labels.get("com.docker.compose.project.working_dir", "").startswith(str(self.workdir)):
                    with contextlib.suppress(docker.errors.APIError):
                        container.remove(force=True)


@contextlib.contextmanager
def local_run(image: str, **kwargs: Any) -> Iterator[LocalRun]:
    run = LocalRun(image, **kwargs)
    try:
        yield run
    finally:
        run.close()


def main(argv: list[str] | None = None) -> int:
    """CLI: train, deploy, predict and batch-transform one image in local mode."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Run a BYOC image in SageMaker SDK local mode")
    parser.add_argument("image")
    parser.add_argument("--data", nargs="+", required=True, metavar="CHANNEL=PATH[:CONTENT_TYPE]")
    parser.add_argument("--hyperparameters", nargs="*", default=[], metavar="K=V")
    parser.add_argument("--instance-count", type=int, default=1)
    parser.add_argument("--gpu", action="store_true", help="instance_type local_gpu")
    parser.add_argument("--predict", type=Path, help="a request body to send to the endpoint")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--accept", default="application/json")
    parser.add_argument("--transform", type=Path, help="a file for a batch transform (SplitType=Line)")
    args = parser.parse_args(argv)
    inputs = {}
    for spec in args.data:
        name, _, rest = spec.partition("=")
        path, _, content_type = rest.partition(":")
        inputs[name] = (path, content_type) if content_type else path
    hyperparameters = dict(item.split("=", 1) for item in args.hyperparameters)
    with local_run(args.image, instance_type="local_gpu" if args.gpu else "local") as run:
        model_data = run.fit(inputs, hyperparameters, instance_count=args.instance_count)
        print(f"model: {model_data}")
        if args.predict or args.transform:
            run.deploy(model_data, content_type=args.content_type, accept=args.accept)
        if args.predict:
            from sagemaker.serializers import IdentitySerializer

            run.predictor.serializer = IdentitySerializer(content_type=args.content_type)
            answer = run.predictor.predict(args.predict.read_bytes())
            print("prediction:", answer.decode() if isinstance(answer, bytes) else json.dumps(answer))
        if args.transform:
            out = run.transform(args.transform, content_type=args.content_type, accept=args.accept)
            print(f"transform output ({out.name}):\n{out.read_text()[:2000]}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
