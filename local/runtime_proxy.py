"""A local stand-in for the SageMaker Runtime InvokeEndpoint API, so unmodified boto3 code can be tested.

boto3 honours `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`: point it at this server and
`boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName=..., Body=...)` is answered by a running
container (a harness endpoint, a local-mode endpoint, any URL that serves `/invocations`) or by a WSGI app
(a Flask app built in a unit test), chosen by the endpoint's name:

    with RuntimeProxy({"ratingModel": "http://127.0.0.1:8080"}) as proxy:
        os.environ.update(proxy.environ())
        boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName="ratingModel", Body=b"...")

What it reproduces of the real service (rest-json, as botocore parses it):
- `POST /endpoints/{EndpointName}/invocations`: Body, Content-Type, Accept and
  `X-Amzn-SageMaker-Custom-Attributes` forwarded to the container's `POST /invocations`; a 2xx answer comes back
  as 200 with the container's body and Content-Type and `x-Amzn-Invoked-Production-Variant: AllTraffic`.
- a container's non-2xx answer: `ModelError` (HTTP 424) whose message reads like SageMaker's
  (`Received client error (400) from primary with message "..."`), with `OriginalStatusCode`,
  `OriginalMessage` and `LogStreamArn`, so `botocore.exceptions.ClientError.response` carries them as it does
  against AWS.
- an unknown endpoint name: `ValidationError` (HTTP 400) `Endpoint {name} of account ... not found.`
- a request body over `max_payload_bytes` (6 MB, InvokeEndpoint's limit): `ValidationError`; a container answer
  over that limit: `ModelError` with OriginalStatusCode 413. (The real service's wording for these two is not
  documented; these messages are the stand-in's own and say so.)
- a container that cannot be reached, or does not answer within `timeout` s (SageMaker's 60): `ModelError`.
Requests are not authenticated (boto3 signs them; the signature is ignored). Every request is recorded in
`requests` (endpoint name, headers, body) so tests can check what was sent byte for byte.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACCOUNT = "111111111111"
REGION = "us-east-1"
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
FORWARDED_HEADERS = ("Content-Type", "Accept", "X-Amzn-SageMaker-Custom-Attributes")
Target = str | Callable[..., Any]  # a base URL ("http://127.0.0.1:8080") or a WSGI application


@dataclass(frozen=True)
class RecordedRequest:
    endpoint_name: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class RuntimeProxy:
    """An HTTP server on 127.0.0.1 answering InvokeEndpoint for the endpoints it was given."""

    def __init__(
        self,
        endpoints: Mapping[str, Target] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = 60.0,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self.endpoints: dict[str, Target] = dict(endpoints or {})
        self.timeout = timeout
        self.max_payload_bytes = max_payload_bytes
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def environ(self) -> dict[str, str]:
        """The environment that sends boto3's sagemaker-runtime clients here."""
        return {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.url}

    def add(self, name: str, target: Target) -> None:
        self.endpoints[name] = target

    def start(self) -> RuntimeProxy:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="runtime-proxy", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> RuntimeProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ what one request gets
    def invoke(self, name: str, headers: Mapping[str, str], body: bytes) -> _Answer:
        with self._lock:
            self.requests.append(RecordedRequest(name, dict(headers), body))
        target = self.endpoints.get(name)
        if target is None:
            return _error(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")
        if len(body) > self.max_payload_bytes:
            return _error(
                400,
                "ValidationError",
                f"Request body of {len(body)} bytes is over InvokeEndpoint's limit of {self.max_payload_bytes} bytes "
                "(runtime_proxy stand-in's wording)",
            )
        forwarded = {key: headers[key] for key in FORWARDED_HEADERS if key in headers}
        try:
            status, answer_headers, answer = self._forward(target, forwarded, body)
        except TimeoutError:
            return _model_error(
                name,
                None,
                f"Your invocation timed out while waiting for a response from container primary "
                f"(no answer within {self.timeout:g} s).",
            )
        except OSError as err:
            return _model_error(name, None, f"Could not reach container primary of endpoint {name}: {err}")
        if not 200 <= status < 300:
            return _model_error(name, status, answer.decode("utf-8", "replace"))
        if len(answer) > self.max_payload_bytes:
            return _model_error(
                name,
                413,
                f"The container's answer of {len(answer)} bytes is over InvokeEndpoint's limit of "
                f"{self.max_payload_bytes} bytes (runtime_proxy stand-in's wording)",
            )
        headers_out = {
            "Content-Type": answer_headers.get("Content-Type", "application/json"),
            "x-Amzn-Invoked-Production-Variant": "AllTraffic",
        }
        if "X-Amzn-SageMaker-Custom-Attributes" in answer_headers:
            headers_out["X-Amzn-SageMaker-Custom-Attributes"] = answer_headers["X-Amzn-SageMaker-Custom-Attributes"]
        return _Answer(200, headers_out, answer)

    def _forward(self, target: Target, headers: dict[str, str], body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        if callable(target):
            from werkzeug.test import Client

            response = Client(target).post("/invocations", data=body, headers=headers)
            return response.status_code, response.headers, response.get_data()
        import requests

        try:
            response = requests.post(
                target.rstrip("/") + "/invocations", data=body, headers=headers, timeout=self.timeout
            )
        except requests.Timeout:
            raise TimeoutError from None
        except requests.RequestException as err:
            raise OSError(str(err)) from None
        return response.status_code, response.headers, response.content


def _error(status: int, code: str, message: str, **fields: Any) -> _Answer:
    body = json.dumps({"message": message, **fields}).encode()
    return _Answer(status, {"Content-Type": "application/json", "x-amzn-ErrorType": code}, body)


def _model_error(name: str, original_status: int | None, original_message: str) -> _Answer:
    """What SageMaker answers when the container fails: a ModelError (424) quoting the container."""
    log_group = f"/aws/sagemaker/Endpoints/{name}"
    if original_status is None:
        message = original_message
        fields: dict[str, Any] = {}
    else:
        kind = "client" if 400 <= original_status < 500 else "server"
        message = (
            f'Received {kind} error ({original_status}) from primary with message "{original_message}". '
            f"See https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}"
            f"#logEventViewer:group={log_group} in account {ACCOUNT} for more information."
        )
        fields = {"OriginalStatusCode": original_status, "OriginalMessage": original_message}
    fields["LogStreamArn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{log_group}"
    return _error(424, "ModelError", message, **fields)


def _handler_class(proxy: RuntimeProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = urllib.parse.urlsplit(self.path).path.split("/")
            if len(parts) == 4 and parts[1] == "endpoints" and parts[3] == "invocations":
                name = urllib.parse.unquote(parts[2])
                headers = {key: self.headers[key] for key in FORWARDED_HEADERS if self.headers.get(key) is not None}
                self._send(proxy.invoke(name, headers, body))
            else:
                self._send(_error(404, "UnknownOperationException", f"no such operation: POST {self.path}"))

        def _send(self, answer: _Answer) -> None:
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests` instead
            pass

    return Handler
