"""A faithful SageMaker container harness on docker-py, without the SageMaker SDK.

It lays out /opt/ml as SageMaker does (hyperparameters as JSON-encoded strings, inputdataconfig,
resourceconfig with current_host/hosts/network_interface_name, checkpointconfig), runs `train` on one
or N hosts (a docker network with hostnames algo-1..algo-N), tars the master's model like SageMaker,
starts `serve` with the model unpacked, waits for /ping and invokes. Pipe mode feeds FIFOs <channel>_<epoch>.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests

from .opt_ml import ChannelSpec, OptMlTree

PING_TIMEOUT = 240.0  # SageMaker's default health-check window for an endpoint
# The tightest way to run an image: read-only root (a tmpfs /tmp the one writable place), no capabilities,
# no privilege gain (docker run --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges).
HARDENED: dict[str, Any] = {
    "read_only": True,
    "tmpfs": {"/tmp": "rw,nosuid,nodev"},
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
}


@dataclass
class HostResult:
    host: str
    exit_code: int
    logs: str
    tree: OptMlTree
    finished_at: float | None = None  # when its container exited (seconds since the epoch)

    @property
    def failure(self) -> str | None:
        path = self.tree.root / "output" / "failure"
        return path.read_text() if path.exists() else None


@dataclass
class TrainingResult:
    hosts: list[HostResult]
    model_archive: Path | None
    seconds: float

    @property
    def ok(self) -> bool:
        return all(h.exit_code == 0 for h in self.hosts)

    @property
    def master(self) -> HostResult:
        return self.hosts[0]

    @property
    def model_dir(self) -> Path:
        return self.master.tree.root / "model"

    @property
    def output_data_dir(self) -> Path:
        return self.master.tree.root / "output" / "data"

    def logs(self) -> str:
        return "\n".join(f"===== {h.host} (exit {h.exit_code}) =====\n{h.logs}" for h in self.hosts)


@dataclass
class Endpoint:
    """A running `serve` container."""

    container: Any
    url: str
    started: float
    ready_seconds: float | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def ping(self, timeout: float = 2.0) -> requests.Response:
        return self.session.get(f"{self.url}/ping", timeout=timeout)

    def invoke(
        self, body: bytes | str, content_type: str = "application/json", accept: str | None = None, timeout: float = 60
    ) -> requests.Response:
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        data = body.encode() if isinstance(body, str) else body
        return self.session.post(f"{self.url}/invocations", data=data, headers=headers, timeout=timeout)

    def get(self, path: str, timeout: float = 5.0) -> requests.Response:
        return self.session.get(f"{self.url}{path}", timeout=timeout)

    def logs(self) -> str:
        try:
            return self.container.logs().decode("utf-8", "replace")
        except docker.errors.NotFound:
            return ""


class HarnessError(RuntimeError):
    pass


class Harness:
    """Runs images the way SageMaker does. One instance per work directory (kept unless cleanup=True)."""

    def __init__(self, workdir: str | os.PathLike | None = None, client: docker.DockerClient | None = None):
        self.client = client or docker.from_env()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="byoc-harness-"))
        self.workdir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- training
    def train(
        self,
        image: str,
        hyperparameters: Mapping[str, Any] | None = None,
        channels: Mapping[str, ChannelSpec | str | os.PathLike] | None = None,
        *,
        instance_count: int = 1,
        environment: Mapping[str, str] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        timeout: float = 1800,
        gpus: bool = False,
        job_name: str | None = None,
        on_started: Any = None,
        container_options: Mapping[str, Any] | None = None,
        absent_hosts: Sequence[str] = (),
    ) -> TrainingResult:
        """Run `train` on `instance_count` hosts. `container_options` go to docker-py's containers.create for
        every host (e.g. mem_limit="1g", or tmpfs={"/opt/ml/model": "size=64k"} for a full disk). Hosts in
        `absent_hosts` are in every host's resourceconfig.json but never start (a peer that never comes up);
        the result lists the hosts that ran."""
        job = job_name or f"job-{uuid.uuid4().hex[:8]}"
        hosts = [f"algo-{i + 1}" for i in range(instance_count)]
        specs = {name: ChannelSpec.of(spec) for name, spec in (channels or {}).items()}
        trees = [
            OptMlTree.create(self.workdir / job / host, hyperparameters or {}, specs, hosts, host, checkpoint_dir)
            for host in hosts
        ]
        network = self.client.networks.create(f"byoc-{job}", driver="bridge") if instance_count > 1 else None
        containers, feeders, stop_feeding = [], [], threading.Event()
        started = time.perf_counter()
        try:
            for tree in trees:
                if tree.current_host in absent_hosts:
                    continue
                feeders += tree.start_pipe_feeders(stop_feeding)
                containers.append(
                    self._start_training_container(image, tree, job, network, environment, gpus, container_options)
                )
            if on_started is not None:
                on_started(containers)
            exit_codes = [self._wait(c, timeout) for c in containers]
            present = [tree for tree in trees if tree.current_host not in absent_hosts]
            results = [
                HostResult(tree.current_host, code, c.logs().decode("utf-8", "replace"), tree, _finished_at(c))
                for tree, c, code in zip(present, containers, exit_codes, strict=True)
            ]
        finally:
            stop_feeding.set()
            for c in containers:
                with contextlib.suppress(docker.errors.APIError):
                    c.remove(force=True)
            if network is not None:
                with contextlib.suppress(docker.errors.APIError):
                    network.remove()
        seconds = time.perf_counter() - started
        archive = None
        if results[0].exit_code == 0 and results[0].host == hosts[0]:
            archive = trees[0].archive_model(self.workdir / job / "output" / "model.tar.gz")
        return TrainingResult(results, archive, seconds)

    def _start_training_container(self, image, tree: OptMlTree, job, network, environment, gpus, options=None):
        kwargs: dict[str, Any] = dict(
            command="train",
            detach=True,
            name=f"{job}-{tree.current_host}",
            hostname=tree.current_host,
            volumes={str(tree.root): {"bind": "/opt/ml", "mode": "rw"}},
            environment={"TRAINING_JOB_NAME": job, **(environment or {})},
        )
        kwargs.update(options or {})
        if tree.checkpoint_dir is not None:
            kwargs["volumes"][str(tree.checkpoint_dir)] = {"bind": "/opt/ml/checkpoints", "mode": "rw"}
        if gpus:
            kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        if network is not None:
            kwargs["network"] = network.name
        container = self.client.containers.create(image, **kwargs)
        if network is not None:
            # The name algo-N must resolve on every host of the job.
            network.disconnect(container)
            network.connect(container, aliases=[tree.current_host])
        container.start()
        return container

    @staticmethod
    def _wait(container, timeout: float) -> int:
        try:
            return int(container.wait(timeout=timeout)["StatusCode"])
        except requests.exceptions.ConnectionError:
            container.kill()
            raise HarnessError(f"training did not finish within {timeout} s") from None

    # ---------------------------------------------------------------- serving
    @contextlib.contextmanager
    def serve(
        self,
        image: str,
        model: str | os.PathLike | None = None,
        *,
        environment: Mapping[str, str] | None = None,
        port: int = 8080,
        ping_timeout: float = PING_TIMEOUT,
        gpus: bool = False,
        keep_on_failure: bool = False,
        container_options: Mapping[str, Any] | None = None,
    ) -> Iterator[Endpoint]:
        """Start `serve` with `model` (a model.tar.gz, unpacked like SageMaker, or a directory) at /opt/ml/model.
        `container_options` go to docker-py's containers.run (e.g. HARDENED)."""
        endpoint = self.start_endpoint(
            image,
            model,
            environment=environment,
            port=port,
            ping_timeout=ping_timeout,
            gpus=gpus,
            container_options=container_options,
        )
        try:
            yield endpoint
        finally:
            self.stop_endpoint(endpoint)

    def start_endpoint(
        self,
        image,
        model=None,
        *,
        environment=None,
        port: int = 8080,
        ping_timeout: float = PING_TIMEOUT,
        gpus: bool = False,
        wait: bool = True,
        container_options: Mapping[str, Any] | None = None,
    ) -> Endpoint:
        model_dir = self._model_dir(model)
        env = dict(environment or {})
        if port != 8080:
            env["SAGEMAKER_BIND_TO_PORT"] = str(port)
        kwargs: dict[str, Any] = dict(
            command="serve",
            detach=True,
            environment=env,
            ports={f"{port}/tcp": ("127.0.0.1", None)},
            volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}},
        )
        if gpus:
            kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        kwargs.update(container_options or {})
        started = time.perf_counter()
        container = self.client.containers.run(image, **kwargs)
        container.reload()
        host_port = container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"]
        endpoint = Endpoint(container, f"http://127.0.0.1:{host_port}", started)
        if wait:
            try:
                self.wait_ready(endpoint, ping_timeout)
            except BaseException:  # a container that never became ready must not outlive the call
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True)
                raise
        return endpoint

    @staticmethod
    def wait_ready(endpoint: Endpoint, timeout: float = PING_TIMEOUT) -> float:
        deadline = endpoint.started + timeout
        while time.perf_counter() < deadline:
            try:
                if endpoint.ping(timeout=2).status_code == 200:
                    endpoint.ready_seconds = time.perf_counter() - endpoint.started
                    return endpoint.ready_seconds
            except requests.RequestException:
                pass
            endpoint.container.reload()
            if endpoint.container.status == "exited":
                raise HarnessError(f"the serve container exited before /ping answered:\n{endpoint.logs()}")
            time.sleep(0.02)
        raise HarnessError(f"/ping did not answer 200 within {timeout} s:\n{endpoint.logs()}")

    @staticmethod
    def stop_endpoint(endpoint: Endpoint, timeout: int = 30) -> float:
        """docker stop: SIGTERM, then SIGKILL after `timeout` s (SageMaker's 30 s). Returns the seconds it took."""
        # An idle keep-alive connection of ours would hold gunicorn's graceful stop for its full timeout.
        endpoint.session.close()
        started = time.perf_counter()
        with contextlib.suppress(docker.errors.APIError):
            endpoint.container.stop(timeout=timeout)
        seconds = time.perf_counter() - started
        with contextlib.suppress(docker.errors.APIError):
            endpoint.container.remove(force=True)
        return seconds

    def model_directory(self, model: str | os.PathLike | None) -> Path:
        """The directory a serve container gets as /opt/ml/model: `model` itself, or a model.tar.gz unpacked."""
        return self._model_dir(model)

    def _model_dir(self, model) -> Path:
        if model is None:
            empty = self.workdir / f"model-{uuid.uuid4().hex[:8]}"
            empty.mkdir(parents=True)
            return empty
        path = Path(model)
        if path.is_dir():
            return path.resolve()
        from byoc_runtime.archive import safe_extract  # the same safe extraction the images use

        target = self.workdir / f"model-{uuid.uuid4().hex[:8]}"
        safe_extract(path, target)
        _make_readable(target)
        return target

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def _finished_at(container) -> float | None:
    """The moment a container exited, from docker's FinishedAt (RFC 3339 with nanoseconds)."""
    import datetime

    try:
        container.reload()
        stamp = container.attrs["State"]["FinishedAt"]
        return datetime.datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
    except (docker.errors.APIError, KeyError, ValueError):
        return None


def _make_readable(root: Path) -> None:
    """SageMaker's model files are world-readable; our workers run as an unprivileged user."""
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | (0o111 if path.is_dir() else 0))
