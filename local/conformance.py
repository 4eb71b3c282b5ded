"""Run any BYOC image through the SageMaker container contract and print a pass/fail table.

    python -m local.conformance IMAGE [--hyperparameters k=v ...] [--data CHANNEL=PATH[:CONTENT_TYPE] ...]
                                [--request FILE] [--content-type TYPE] [--json]

Checks: train writes a model; a failing train writes /opt/ml/output/failure and exits non-zero; /ping
answers 200 within the health-check window, each within 2 s; /invocations answers a valid request;
an unsupported content type gets a 4xx; a malformed body gets a 4xx, not a 5xx; SAGEMAKER_BIND_TO_PORT is
honoured; /execution-parameters is valid JSON (optional in SageMaker: 404 is reported as n/a); SIGTERM
stops the server within SageMaker's 30 s; the image declares accept-bind-to-port; an image labelled
multi-models=true serves the multi-model calls (load, 409, 404, list, describe, invoke with the single-model
answer, unload). Exit status 1 if any check fails, so it can gate a CI pipeline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from local.harness import Endpoint, Harness, HarnessError
from local.opt_ml import ChannelSpec

PING_WINDOW_S = 240.0  # default endpoint health-check window
PING_RESPONSE_S = 2.0
STOP_LIMIT_S = 30.0  # SIGKILL follows SIGTERM after 30 s
ALT_PORT = 9311
MULTI_MODEL_LABEL = "com.amazonaws.sagemaker.capabilities.multi-models"


@dataclass
class Check:
    name: str
    status: str  # PASS | FAIL | N/A
    detail: str


class Conformance:
    def __init__(
        self,
        image: str,
        hyperparameters: dict,
        channels: dict[str, ChannelSpec],
        request: bytes | None,
        content_type: str,
        harness: Harness | None = None,
    ):
        self.image, self.hyperparameters, self.channels = image, hyperparameters, channels
        self.request, self.content_type = request, content_type
        self.harness = harness or Harness()
        self.results: list[Check] = []
        self.model_archive: Path | None = None
        self._single_model_answer: bytes | None = None

    def record(self, name: str, ok: bool | None, detail: str) -> None:
        self.results.append(Check(name, "N/A" if ok is None else "PASS" if ok else "FAIL", detail))

    def run(self) -> list[Check]:
        self.check_label()
        self.check_train()
        self.check_failing_train()
        if self.model_archive is None:
            for name in (
                "ping",
                "invocations",
                "unsupported content type",
                "malformed body",
                "execution-parameters",
                "SIGTERM stops the server",
                "SAGEMAKER_BIND_TO_PORT",
            ):
                self.record(name, False, "not run: training produced no model")
            return self.results
        try:
            endpoint = self.harness.start_endpoint(self.image, self.model_archive, ping_timeout=PING_WINDOW_S)
        except HarnessError as err:
            self.record("ping", False, str(err).splitlines()[0])
            return self.results
        try:
            self.check_ping(endpoint)
            self.check_invocations(endpoint)
            self.check_unsupported(endpoint)
            self.check_malformed(endpoint)
            self.check_execution_parameters(endpoint)
        finally:
            self.check_sigterm(endpoint)
        self.check_bind_to_port()
        self._guard("multi-model endpoint", self.check_multi_model)
        return self.results

    def _guard(self, name: str, check: Callable[[], None]) -> None:
        try:
            check()
        except Exception as err:  # noqa: BLE001 - a check that cannot run has failed
            self.record(name, False, f"{type(err).__name__}: {err}"[:200])

    def check_label(self) -> None:
        labels = self.harness.client.images.get(self.image).labels or {}
        ok = labels.get("com.amazonaws.sagemaker.capabilities.accept-bind-to-port") == "true"
        self.record(
            "label accept-bind-to-port=true", ok, "present" if ok else "missing (SageMaker may not set the port)"
        )

    def check_train(self) -> None:
        result = self.harness.train(self.image, self.hyperparameters, self.channels, timeout=1800)
        files = [p for p in result.model_dir.rglob("*") if p.is_file()] if result.model_dir.exists() else []
        ok = result.ok and bool(files)
        detail = f"exit {result.master.exit_code}, {len(files)} file(s) in /opt/ml/model, {result.seconds:.1f} s"
        if not ok and result.master.failure:
            detail += f"; failure: {result.master.failure.splitlines()[0][:120]}"
        self.record("train writes a model", ok, detail)
        self.model_archive = result.model_archive if ok else None

    def check_failing_train(self) -> None:
        # No data at all and a hyperparameter no algorithm knows: a conformant image must fail, and say why.
        result = self.harness.train(self.image, {**self.hyperparameters, "conformance_bogus_parameter": 1}, {})
        failure = result.master.failure
        ok = result.master.exit_code != 0 and bool(failure and failure.strip())
        detail = f"exit {result.master.exit_code}; " + (
            f"failure: {failure.strip().splitlines()[0][:120]}" if failure else "no /opt/ml/output/failure"
        )
        self.record("failing train writes output/failure", ok, detail)

    def check_ping(self, endpoint: Endpoint) -> None:
        slowest = 0.0
        for _ in range(5):
            started = time.perf_counter()
            status = endpoint.ping(timeout=PING_RESPONSE_S).status_code
            slowest = max(slowest, time.perf_counter() - started)
            if status != 200:
                break
        ok = status == 200 and endpoint.ready_seconds <= PING_WINDOW_S and slowest <= PING_RESPONSE_S
        self.record("ping", ok, f"healthy after {endpoint.ready_seconds:.2f} s; slowest /ping {slowest * 1000:.0f} ms")

    def check_invocations(self, endpoint: Endpoint) -> None:
        if self.request is None:
            self.record("invocations", None, "no --request given")
            return
        response = endpoint.invoke(self.request, self.content_type)
        self._single_model_answer = response.content
        self.record(
            "invocations",
            200 <= response.status_code < 300,
            f"{response.status_code} {response.headers.get('Content-Type', '')}: {response.text[:80]!r}",
        )

    def check_unsupported(self, endpoint: Endpoint) -> None:
        response = endpoint.invoke(b"\x00\x01conformance", "application/x-conformance-unknown")
        self.record("unsupported content type", 400 <= response.status_code < 500, f"{response.status_code}")

    def check_malformed(self, endpoint: Endpoint) -> None:
        response = endpoint.invoke(b"{\x00 not valid", self.content_type)
        ok = 400 <= response.status_code < 500
        self.record("malformed body", ok, f"{response.status_code}: {response.text[:80]!r}")
        still = endpoint.ping().status_code
        if still != 200:
            self.record("serves after bad requests", False, f"/ping {still}")

    def check_execution_parameters(self, endpoint: Endpoint) -> None:
        response = endpoint.get("/execution-parameters")
        if response.status_code == 404:
            self.record("execution-parameters", None, "not implemented (optional)")
            return
        try:
            params = response.json()
            ok = (
                response.status_code == 200
                and isinstance(params.get("MaxConcurrentTransforms"), int)
                and params["MaxConcurrentTransforms"] > 0
                and params.get("BatchStrategy") in ("MULTI_RECORD", "SINGLE_RECORD")
                and isinstance(params.get("MaxPayloadInMB"), int)
                and 0 < params["MaxPayloadInMB"] <= 100
            )
        except (ValueError, AttributeError):
            ok, params = False, response.text[:80]
        self.record("execution-parameters", ok, json.dumps(params)[:120])

    def check_sigterm(self, endpoint: Endpoint) -> None:
        seconds = self.harness.stop_endpoint(endpoint, timeout=int(STOP_LIMIT_S))
        self.record("SIGTERM stops the server", seconds < STOP_LIMIT_S - 1, f"stopped in {seconds:.1f} s")

    def check_bind_to_port(self) -> None:
        try:
            endpoint = self.harness.start_endpoint(self.image, self.model_archive, port=ALT_PORT, ping_timeout=20)
        except HarnessError as err:
            self.record(
                "SAGEMAKER_BIND_TO_PORT", False, f"no /ping on port {ALT_PORT}: {str(err).splitlines()[0][:80]}"
            )
            return
        self.harness.stop_endpoint(endpoint, timeout=5)
        self.record("SAGEMAKER_BIND_TO_PORT", True, f"/ping 200 on port {ALT_PORT}")

    def check_multi_model(self) -> None:
        """An image labelled multi-models=true must serve SageMaker's multi-model calls: load (409 twice, 404
        without the directory), list, describe, invoke (the single-model endpoint's answer), unload (404 after)."""
        labels = self.harness.client.images.get(self.image).labels or {}
        if labels.get(MULTI_MODEL_LABEL) != "true":
            self.record("multi-model endpoint", None, f"no {MULTI_MODEL_LABEL}=true label")
            return
        models = self.harness.workdir / "conformance-models"
        extracted = self.harness.model_directory(self.model_archive)
        for name in ("a", "b"):
            shutil.copytree(extracted, models / name / "model", dirs_exist_ok=True)
        options = {"volumes": {str(models): {"bind": "/opt/ml/models", "mode": "ro"}}}
        env = {"SAGEMAKER_MULTI_MODEL": "true"}
        endpoint = self.harness.start_endpoint(self.image, None, environment=env, container_options=options)
        try:
            session, url = endpoint.session, endpoint.url

            def load(name: str, directory: str) -> int:
                body = json.dumps({"model_name": name, "url": directory})
                return session.post(f"{url}/models", data=body, timeout=60).status_code

            codes = {"load": load("a", "/opt/ml/models/a/model"), "load again": load("a", "/opt/ml/models/a/model"),
                     "load a missing directory": load("c", "/opt/ml/models/none/model")}  # fmt: skip
            listed = session.get(f"{url}/models", timeout=10).json().get("models", [])
            described = session.get(f"{url}/models/a", timeout=10).json()
            ok = (codes == {"load": 200, "load again": 409, "load a missing directory": 404}
                  and listed == [{"modelName": "a", "modelUrl": "/opt/ml/models/a/model"}]
                  and described.get("modelName") == "a")  # fmt: skip
            self.record("multi-model: load, list, describe", ok, f"{codes}; listed {listed}"[:200])
            if self.request is not None:
                answer = session.post(f"{url}/models/a/invoke", data=self.request,
                                      headers={"Content-Type": self.content_type}, timeout=60)  # fmt: skip
                same = answer.content == self._single_model_answer
                detail = f"{answer.status_code}; the single-model endpoint's answer: {same}"
                self.record("multi-model: invoke", answer.status_code == 200 and same, detail)
            codes = [session.delete(f"{url}/models/a", timeout=10).status_code,
                     session.post(f"{url}/models/a/invoke", data=self.request or b"{}",
                                  headers={"Content-Type": self.content_type}, timeout=10).status_code,
                     session.delete(f"{url}/models/a", timeout=10).status_code]  # fmt: skip
            self.record("multi-model: unload", codes == [200, 404, 404], f"unload, invoke, unload: {codes}")
        finally:
            self.harness.stop_endpoint(endpoint, timeout=10)


def print_table(image: str, results: list[Check]) -> None:
    print(f"\nSageMaker container contract: {image}\n")
    print("| check | result | detail |\n|---|---|---|")
    for check in results:
        print(f"| {check.name} | {check.status} | {check.detail.replace('|', '/')} |")
    failed = sum(c.status == "FAIL" for c in results)
    print(f"\n{len(results) - failed} passed, {failed} failed")


def _parse_data(specs: list[str]) -> dict[str, ChannelSpec]:
    channels = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        path, _, content_type = rest.partition(":")
        channels[name] = ChannelSpec(Path(path), content_type or None)
    return channels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--hyperparameters", nargs="*", default=[], metavar="K=V")
    parser.add_argument("--data", nargs="*", default=[], metavar="CHANNEL=PATH[:CONTENT_TYPE]")
    parser.add_argument("--request", type=Path, help="a valid request body for /invocations")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    hyperparameters = dict(item.split("=", 1) for item in args.hyperparameters)
    conformance = Conformance(
        args.image,
        hyperparameters,
        _parse_data(args.data),
        args.request.read_bytes() if args.request else None,
        args.content_type,
    )
    try:
        results = conformance.run()
    except requests.RequestException as err:
        results = conformance.results + [Check("server reachable", "FAIL", str(err)[:200])]
    finally:
        conformance.harness.cleanup()
    print_table(args.image, results)
    if args.json:
        print(json.dumps([c.__dict__ for c in results], indent=1))
    return 1 if any(c.status == "FAIL" for c in results) else 0


if __name__ == "__main__":
    sys.exit(main())
