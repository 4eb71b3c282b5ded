"""The WSGI app of each worker: /ping, /invocations, /execution-parameters. Created in each worker after fork.

A plain WSGI callable rather than a web framework: the contract has three routes, and a framework's request
and response objects cost more per request than the whole of a small model's prediction (Flask's doubled the
server's CPU time per request). Every answer the contract asks for is here: JSON bodies for every error,
including unknown routes (404) and methods (405). `test_client()` gives werkzeug's test client (tests only).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from . import batching, multi_model, request_context
from . import handlers as handler_registry
from .errors import BadRequest, InvocationError, ModelNotReady
from .invocation import error_response, invoke, payload_too_large
from .model_holder import ModelHolder
from .serving_settings import ServingSettings

log = logging.getLogger(__name__)
DRAIN_FACTOR = 4  # read and discard up to 4x the payload limit of an oversized body before answering 413
DRAIN_CHUNK = 1 << 16
JSON = "application/json"
# path -> the methods it answers (HEAD wherever GET, as HTTP servers do)
ROUTES = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",), "/execution-parameters": ("GET", "HEAD")}
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def _drain(stream, limit: int) -> bool:
    """Read and discard the rest of a request body, at most `limit` bytes; True when it ended within that."""
    while limit > 0:
        chunk = stream.read(min(DRAIN_CHUNK, limit))
        if not chunk:
            return True
        limit -= len(chunk)
    return not stream.read(1)


def _content_length(environ: dict[str, Any]) -> int | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


class ServingApp:
    """One worker's app: the settings, the handlers and the model holder (one model) or the multi-model server
    (models loaded by name), and the WSGI entry point."""

    def __init__(
        self,
        settings: ServingSettings,
        handlers: handler_registry.Handlers,
        holder: ModelHolder | None,
        models: multi_model.MultiModelServer | None = None,
    ):
        self.settings, self.handlers, self.model, self.models = settings, handlers, holder, models
        self._logged_targets: set[str] = set()
        self._archive_server: multi_model.MultiModelServer | None = None
        # The one model's predictions batched across concurrent requests, where the handlers can (batching.py)
        self.batcher = None
        if holder is not None and handlers.predict_batch_fn is not None and batching.enabled():
            self.batcher = batching.Batcher(handlers.predict_batch_fn, batching.max_batch())

    def __call__(self, environ: dict[str, Any], start_response) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        try:
            allowed = ROUTES.get(path)
            if self.models is not None and (path == "/models" or path.startswith("/models/")):
                answer = self.multi_model_call(method, path, environ)
            elif self.models is not None and path == "/invocations" and not _target(environ):
                answer = self._error(multi_model.ModelNotLoaded(
                    "This endpoint serves several models: invoke one with POST /models/{name}/invoke "
                    "(InvokeEndpoint's TargetModel)"))  # fmt: skip
            elif allowed is None:
                answer = self._route_error(HTTPStatus.NOT_FOUND, method, path)
            elif method not in allowed:
                answer = self._route_error(HTTPStatus.METHOD_NOT_ALLOWED, method, path)
                answer[2].append(("Allow", ", ".join(allowed)))
            elif path == "/invocations":
                answer = self.invocations(environ)
            elif path == "/ping":
                answer = self.ping()
            else:
                answer = self.execution_parameters()
        except Exception as err:  # noqa: BLE001 - a bug of ours: logged with its trace, answered without it
            log.exception("unhandled error")
            answer = self._error(InvocationError(f"The model server failed: {type(err).__name__}"))
        status, body, headers = answer
        headers.append(("Content-Length", str(len(body))))
        start_response(_STATUS_LINES.get(status) or str(status), headers)
        return [] if method == "HEAD" else [body]

    # --- routes ----------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether this worker can answer invocations now (its model loaded; a multi-model server always)."""
        return self.models is not None or self.model.ready

    def ping(self) -> tuple[int, bytes, list]:
        if self.ready:  # a multi-model server is ready with no model loaded
            return 200, b"", [("Content-Type", "text/plain")]
        if self.model.error:
            return self._error(ModelNotReady(f"The model failed to load: {self.model.error}"))
        return self._error(ModelNotReady("The model is still loading"))

    def invocations(self, environ: dict[str, Any], name: str | None = None) -> tuple[int, bytes, list]:
        """POST /invocations, or (`name`) POST /models/{name}/invoke on a multi-model server."""
        limit = self.settings.max_payload_bytes
        stream = environ["wsgi.input"]
        length = _content_length(environ)
        if length is not None and length > limit:
            return self._too_large(stream, length)
        body = stream.read(limit + 1)  # bounded even without Content-Length (chunked)
        if len(body) > limit:
            return self._too_large(stream, None)
        target = _target(environ)
        batcher = None
        try:
            if name is not None:
                model = self.models.model(name)
            elif target:  # SDK local mode's MultiDataModel: TargetModel on /invocations
                if self.models is not None and target in self.models.registry.entries():
                    model = self.models.model(target)
                else:
                    model = self._archives().archive_model(self.settings.model_dir, target)
            else:
                model, batcher = self.model.get(wait=self.settings.timeout), self.batcher
        except InvocationError as err:
            return self._error(err)
        with request_context.active(environ):
            status, payload, mimetype = invoke(
                self.handlers,
                model,
                body,
                environ.get("CONTENT_TYPE"),
                environ.get("HTTP_ACCEPT"),
                max_payload_bytes=limit,
                max_response_bytes=self.settings.max_response_bytes,
                default_accept=self.settings.default_accept,
                batcher=batcher,
            )
        return status, payload, [("Content-Type", mimetype)]

    def execution_parameters(self) -> tuple[int, bytes, list]:
        params = {
            "MaxConcurrentTransforms": self.settings.max_concurrent_transforms or self.settings.workers,
            "BatchStrategy": self.settings.batch_strategy,
            "MaxPayloadInMB": int(self.settings.max_payload_mb),
        }
        return 200, json.dumps(params).encode(), [("Content-Type", JSON)]

    def multi_model_call(self, method: str, path: str, environ: dict[str, Any]) -> tuple[int, bytes, list]:
        """The multi-model contract: /models (GET list, POST load), /models/{name} (GET, DELETE),
        /models/{name}/invoke (POST)."""
        name, _, action = path.removeprefix("/models").lstrip("/").partition("/")
        if name and action == "invoke":
            if method != "POST":
                return self._route_error(HTTPStatus.METHOD_NOT_ALLOWED, method, path)
            self._log_target(name, environ)
            return self.invocations(environ, name)
        if action:
            return self._route_error(HTTPStatus.NOT_FOUND, method, path)
        if name:
            calls = {"GET": lambda: self.models.describe(name), "DELETE": lambda: self.models.unload(name)}
        else:
            calls = {
                "GET": lambda: self.models.listing(*_query(environ, "limit", "next_page_token")),
                "POST": lambda: self.models.load(self._json_body(environ), _target(environ)),
            }
        if method not in calls:
            status, body, headers = self._route_error(HTTPStatus.METHOD_NOT_ALLOWED, method, path)
            return status, body, [*headers, ("Allow", ", ".join(calls))]
        try:
            return 200, json.dumps(calls[method]()).encode(), [("Content-Type", JSON)]
        except InvocationError as err:
            return self._error(err)

    def _archives(self) -> multi_model.MultiModelServer:
        """Models named by Target-Model on a single-model endpoint (SDK local mode's MultiDataModel)."""
        if self._archive_server is None:
            server = multi_model.MultiModelServer.from_env(self.handlers.model_fn, self.settings.workers)
            server.archives_only = True
            self._archive_server = server
        return self._archive_server

    def _log_target(self, name: str, environ: dict[str, Any]) -> None:
        """InvokeEndpoint's TargetModel arrives as a header, for logs: the first invocation of each model in
        this worker logs it (every one at DEBUG)."""
        target = _target(environ)
        if name not in self._logged_targets:
            self._logged_targets.add(name)
            log.info("invoking model %s (X-Amzn-SageMaker-Target-Model: %s)", name, target or "-")
        else:
            log.debug("invoking model %s (X-Amzn-SageMaker-Target-Model: %s)", name, target or "-")

    def _json_body(self, environ: dict[str, Any]) -> Any:
        body = environ["wsgi.input"].read(self.settings.max_payload_bytes + 1)
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise BadRequest(f"The body is not JSON: {err}") from None

    # --- errors ----------------------------------------------------------------------------------------------

    @staticmethod
    def _error(error: InvocationError) -> tuple[int, bytes, list]:
        status, body, mimetype = error_response(error)
        return status, body, [("Content-Type", mimetype)]

    @staticmethod
    def _route_error(status: HTTPStatus, method: str, path: str) -> tuple[int, bytes, list]:
        body = {"error": f"{status.phrase}: {method} {path}", "error_type": status.phrase.replace(" ", "")}
        return status.value, json.dumps(body).encode(), [("Content-Type", JSON)]

    def _too_large(self, stream, length: int | None) -> tuple[int, bytes, list]:
        # Read the rest of the body (up to a bound) before answering: a client still sending would otherwise
        # see its connection reset, not our 413.
        limit = self.settings.max_payload_bytes
        drained = _drain(stream, DRAIN_FACTOR * limit)
        size = f"{length} bytes" if length is not None else f"over {limit} bytes"
        status, body, headers = self._error(payload_too_large(size, limit))
        if not drained:
            headers.append(("Connection", "close"))
        return status, body, headers

    def test_client(self):
        """werkzeug's test client over this app (in-process tests; werkzeug is a test dependency only)."""
        from werkzeug.test import Client
        from werkzeug.wrappers import Response

        return Client(self, Response)


def _target(environ: dict[str, Any]) -> str | None:
    return environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_MODEL")


def _query(environ: dict[str, Any], *names: str) -> list[str | None]:
    values = parse_qs(environ.get("QUERY_STRING") or "")
    return [values.get(name, [None])[0] for name in names]


def create_app(
    settings: ServingSettings | None = None,
    handlers: handler_registry.Handlers | None = None,
    *,
    background_load: bool = True,
    exit_on_load_failure: bool = False,
) -> ServingApp:
    """The app of one worker. `exit_on_load_failure` (serve's workers): a model that cannot be loaded ends the
    process with the boot-error code, so the server stops with the reason instead of answering 503 for ever."""
    settings = settings or ServingSettings.from_env()
    handlers = handlers or handler_registry.resolve(settings)
    if settings.multi_model:
        server = multi_model.MultiModelServer.from_env(handlers.model_fn, settings.workers)
        if multi_model.following():
            server.follow()
        return ServingApp(settings, handlers, None, server)
    holder = ModelHolder(lambda: handlers.model_fn(str(settings.model_dir)), exit_on_failure=exit_on_load_failure)
    holder.start(background_load)
    return ServingApp(settings, handlers, holder)
