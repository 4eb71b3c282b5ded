"""The Flask app: /ping, /invocations, /execution-parameters. Created in each worker after fork."""

from __future__ import annotations

import json
import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from . import handlers as handler_registry
from .errors import InvocationError, ModelNotReady
from .invocation import error_response, invoke, payload_too_large
from .model_holder import ModelHolder
from .serving_settings import ServingSettings

log = logging.getLogger(__name__)
DRAIN_FACTOR = 4  # read and discard up to 4x the payload limit of an oversized body before answering 413
DRAIN_CHUNK = 1 << 16


def _drain(stream, limit: int) -> bool:
    """Read and discard the rest of a request body, at most `limit` bytes; True when it ended within that."""
    while limit > 0:
        chunk = stream.read(min(DRAIN_CHUNK, limit))
        if not chunk:
            return True
        limit -= len(chunk)
    return not stream.read(1)


def create_app(
    settings: ServingSettings | None = None,
    handlers: handler_registry.Handlers | None = None,
    *,
    background_load: bool = True,
    exit_on_load_failure: bool = False,
) -> Flask:
    """The app of one worker. `exit_on_load_failure` (serve's workers): a model that cannot be loaded ends the
    process with the boot-error code, so the server stops with the reason instead of answering 503 for ever."""
    settings = settings or ServingSettings.from_env()
    handlers = handlers or handler_registry.resolve(settings)
    holder = ModelHolder(lambda: handlers.model_fn(str(settings.model_dir)), exit_on_failure=exit_on_load_failure)
    holder.start(background_load)
    app = Flask("byoc_runtime")
    # Let the body through to our own check, which answers 413 as JSON; werkzeug's would be HTML.
    app.config["MAX_CONTENT_LENGTH"] = None
    app.extensions["byoc"] = {"settings": settings, "handlers": handlers, "model": holder}

    def json_error(error: InvocationError) -> Response:
        status, body, mimetype = error_response(error)
        return Response(body, status=status, mimetype=mimetype)

    @app.get("/ping")
    def ping() -> Response:
        if holder.ready:
            return Response(b"", status=200)
        if holder.error:
            return json_error(ModelNotReady(f"The model failed to load: {holder.error}"))
        return json_error(ModelNotReady("The model is still loading"))

    def too_large(length: int | None) -> Response:
        # Read the rest of the body (up to a bound) before answering: a client still sending would otherwise
        # see its connection reset, not our 413.
        drained = _drain(request.stream, DRAIN_FACTOR * settings.max_payload_bytes)
        size = f"{length} bytes" if length is not None else f"over {settings.max_payload_bytes} bytes"
        response = json_error(payload_too_large(size, settings.max_payload_bytes))
        if not drained:
            response.headers["Connection"] = "close"
        return response

    @app.post("/invocations")
    def invocations() -> Response:
        length = request.content_length
        if length is not None and length > settings.max_payload_bytes:
            return too_large(length)
        body = request.stream.read(settings.max_payload_bytes + 1)  # bounded even without Content-Length
        if len(body) > settings.max_payload_bytes:
            return too_large(None)
        try:
            model = holder.get(wait=settings.timeout)
        except InvocationError as err:
            return json_error(err)
        status, payload, mimetype = invoke(
            handlers,
            model,
            body,
            request.headers.get("Content-Type"),
            request.headers.get("Accept"),
            max_payload_bytes=settings.max_payload_bytes,
            max_response_bytes=settings.max_response_bytes,
            default_accept=settings.default_accept,
        )
        return Response(payload, status=status, mimetype=mimetype)

    @app.get("/execution-parameters")
    def execution_parameters() -> Response:
        params = {
            "MaxConcurrentTransforms": settings.max_concurrent_transforms or settings.workers,
            "BatchStrategy": settings.batch_strategy,
            "MaxPayloadInMB": int(settings.max_payload_mb),
        }
        return Response(json.dumps(params), status=200, mimetype="application/json")

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        # 404, 405 and werkzeug's own refusals: JSON like every other error, never HTML.
        body = json.dumps(
            {"error": f"{err.name}: {request.method} {request.path}", "error_type": (err.name or "").replace(" ", "")}
        )
        return Response(body, status=err.code or 500, mimetype="application/json")

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response:
        log.exception("unhandled error")
        return json_error(InvocationError(f"The model server failed: {type(err).__name__}"))

    return app
