"""One invocation as a plain function: (body, content type, accept) -> (status, body, content type).

No Flask here, so the logic is testable and benchmarkable without HTTP. Errors never leak tracebacks to
the client: InvocationError subclasses carry their status; what handlers raise while reading a request
(ValueError, KeyError, IndexError, TypeError, OverflowError, RecursionError) is a 400 with its message;
MemoryError a 413; anything else is a 500 logged with its trace. An answer over the response limit
(SageMaker's InvokeEndpoint returns at most 6 MB) is a 413 that says how many instances would fit, not a
response the platform would fail with its own, vaguer, error.
"""

from __future__ import annotations

import logging
from typing import Any

from . import codecs
from .batching import Batcher
from .errors import BadRequest, InvocationError, NotAcceptable, PayloadTooLarge
from .handlers import Handlers

log = logging.getLogger(__name__)
JSON = codecs.JSON


def payload_too_large(size: str, limit: int) -> PayloadTooLarge:
    """The 413 of a body over SAGEMAKER_MAX_PAYLOAD_IN_MB; `size` as known ("7340032 bytes", "over ...")."""
    return PayloadTooLarge(f"The request body is {size}; the limit is {limit} bytes (SAGEMAKER_MAX_PAYLOAD_IN_MB)")


def response_too_large(size: int, limit: int, count: int | None) -> PayloadTooLarge:
    """The 413 of an answer over the response limit; with the number of predictions, how many would fit."""
    hint = "send fewer instances per request"
    if count:
        fit = int(limit // (size / count))
        hint = f"its {count} predictions average {size // count} bytes: send at most {fit} instances per request"
    return PayloadTooLarge(
        f"The response would be {size} bytes, over the {limit}-byte limit of a SageMaker endpoint's answer "
        f"(BYOC_MAX_RESPONSE_MB); {hint}"
    )


def error_response(error: InvocationError) -> tuple[int, bytes, str]:
    return error.status, codecs.json_codec.encode(error.to_dict()), JSON


def invoke(
    handlers: Handlers,
    model: Any,
    body: bytes,
    content_type: str | None,
    accept: str | None,
    *,
    max_payload_bytes: int | None = None,
    max_response_bytes: int | None = None,
    default_content_type: str = JSON,
    default_accept: str = JSON,
    batcher: Batcher | None = None,
) -> tuple[int, bytes, str]:
    """`batcher`: where the prediction runs, batched with other requests' (the handlers' predict_batch_fn)."""
    try:
        if max_payload_bytes is not None and len(body) > max_payload_bytes:
            raise payload_too_large(f"{len(body)} bytes", max_payload_bytes)
        content_type = content_type or default_content_type
        # A user's output side (accepts None) decides what it can write: pass it the client's preferred type.
        offered = ["*/*"] if handlers.accepts is None else list(handlers.accepts)
        response_type = codecs.negotiate(accept, offered, default_accept)
        result, count = _run_handlers(handlers, model, body, content_type, response_type, batcher)
        if isinstance(result, tuple):
            payload, response_type = result
        else:
            payload = result
        if isinstance(payload, str):
            payload = payload.encode()
        if max_response_bytes and len(payload) > max_response_bytes:
            raise response_too_large(len(payload), max_response_bytes, count)
        return 200, payload, response_type
    except InvocationError as err:
        return error_response(err)
    except MemoryError:
        log.warning("a request needed more memory than this worker could get (%d bytes of body)", len(body))
        return error_response(PayloadTooLarge("The request needs more memory than this server has; send less at once"))
    except Exception:  # noqa: BLE001 - a bug, not the client's fault: log the trace, answer without it
        log.exception("invocation failed")
        return error_response(InvocationError("The model server failed to process the request; see its log"))


def _run_handlers(
    handlers: Handlers, model: Any, body: bytes, content_type: str, accept: str, batcher: Batcher | None = None
) -> tuple[Any, int | None]:
    """(what the handlers answered, the number of predictions where it is known)."""
    if handlers.transform_fn is not None:
        return _client_errors(handlers.transform_fn, model, body, content_type, accept), None
    data = _client_errors(handlers.input_fn, body, content_type)
    prediction = _client_errors(batcher.predict if batcher else handlers.predict_fn, data, model)
    try:
        return handlers.output_fn(prediction, accept), _count(prediction)
    except InvocationError:
        raise
    except (ValueError, TypeError, OverflowError) as err:
        raise NotAcceptable(f"The prediction cannot be written as {accept}: {err}") from None
    except RecursionError:
        raise NotAcceptable(f"The prediction cannot be written as {accept}: it is nested too deeply") from None


def _count(prediction: Any) -> int | None:
    """How many predictions: a list's length or an array's rows; None when it cannot be told."""
    if isinstance(prediction, list | tuple):
        return len(prediction)
    shape = getattr(prediction, "shape", None)
    return int(shape[0]) if isinstance(shape, tuple) and shape else None


def _client_errors(fn, *args):
    """Parsing and shape errors in the handlers describe the request: answer 400 with their message."""
    try:
        return fn(*args)
    except InvocationError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, OverflowError) as err:
        log.info("bad request from %s: %r", getattr(fn, "__name__", fn), err)
        message = str(err) if not isinstance(err, KeyError) else f"missing or unknown key {err}"
        raise BadRequest(f"Invalid input: {message}") from None
    except RecursionError:
        raise BadRequest("Invalid input: it is nested too deeply") from None
