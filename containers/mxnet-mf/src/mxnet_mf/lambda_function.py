"""Lambda-style request handlers in front of an mxnet-mf endpoint (the course's lambda_function.py).

Events (a plain Lambda event, or an API Gateway proxy event whose "body" is that JSON):
  {"type": "rating", "user_id": 196, "item_id": 242}                   -> {"rating": 3.9}
  {"type": "rating", "pairs": [[196, 242], [186, 302]]}                 -> {"ratings": [3.9, 3.1]}
  {"type": "recommendation", "user_id": 196, "k": 10, "exclude_rated": true}
      -> {"user_id": 196, "recommendations": [{"item_id", "score", "title"?}, ...]}
The answer is an API Gateway proxy response: {"statusCode", "headers", "body": JSON}. A bad event is a 400
here; the endpoint's own 4xx (unknown ids, ...) is passed through with its message; anything else is a 502.

The endpoint is called through an Invoker, `(content_type, body, accept) -> (status, body)`: by default
boto3's sagemaker-runtime InvokeEndpoint on the endpoint named by $ENDPOINT_NAME; tests inject one that
calls a running container (local mode's runtime client, or plain HTTP).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

Invoker = Callable[[str, bytes, str], tuple[int, bytes]]
JSON = "application/json"


class EventError(ValueError):
    """The event cannot be turned into an endpoint request."""


def sagemaker_runtime_invoker(endpoint_name: str | None = None, client: Any = None) -> Invoker:
    """InvokeEndpoint through boto3 (or any client with its signature, e.g. the SDK's local-mode client)."""
    name = endpoint_name or os.environ.get("ENDPOINT_NAME")
    if not name:
        raise EventError("no endpoint: set ENDPOINT_NAME")

    def invoke(content_type: str, body: bytes, accept: str) -> tuple[int, bytes]:
        nonlocal client
        if client is None:
            import boto3

            client = boto3.client("sagemaker-runtime")
        try:
            response = client.invoke_endpoint(EndpointName=name, ContentType=content_type, Accept=accept, Body=body)
        except Exception as err:  # botocore ClientError "ModelError" carries the container's status and body
            details = getattr(err, "response", None) or {}
            if "OriginalStatusCode" not in details:
                raise
            message = details.get("OriginalMessage") or details.get("Error", {}).get("Message", "")
            return int(details["OriginalStatusCode"]), str(message).encode()
        stream = response["Body"]
        status = getattr(stream, "status", 200)  # the SDK's local client returns the raw HTTP response
        payload = stream.read() if hasattr(stream, "read") else stream
        if not payload and hasattr(stream, "data"):
            payload = stream.data
        return int(status), payload

    return invoke


def http_invoker(url: str, timeout: float = 30.0) -> Invoker:
    """POST to a container's /invocations directly (a harness endpoint, a container on a host port)."""

    def invoke(content_type: str, body: bytes, accept: str) -> tuple[int, bytes]:
        import requests

        response = requests.post(
            url.rstrip("/") + "/invocations",
            data=body,
            headers={"Content-Type": content_type, "Accept": accept},
            timeout=timeout,
        )
        return response.status_code, response.content

    return invoke


def make_handler(invoker: Invoker | None = None) -> Callable[[dict, Any], dict]:
    """A Lambda handler bound to an invoker (default: sagemaker-runtime, created on first use)."""

    def handler(event: dict, context: Any = None) -> dict:
        nonlocal invoker
        try:
            request, unpack = endpoint_request(parse_event(event))
        except EventError as err:
            return _response(400, {"error": str(err), "error_type": "BadEvent"})
        if invoker is None:
            invoker = sagemaker_runtime_invoker()
        status, body = invoker(JSON, json.dumps(request).encode(), JSON)
        if status != 200:
            return _response(status if 400 <= status < 500 else 502, _endpoint_error(status, body))
        try:
            return _response(200, unpack(json.loads(body)["predictions"]))
        except (ValueError, KeyError, TypeError):
            return _response(502, {"error": "the endpoint's answer was not understood", "error_type": "BadGateway"})

    return handler


def parse_event(event: Any) -> dict[str, Any]:
    if isinstance(event, dict) and isinstance(event.get("body"), str):  # API Gateway proxy integration
        try:
            event = json.loads(event["body"])
        except ValueError as err:
            raise EventError(f"the request body is not JSON: {err}") from None
    if not isinstance(event, dict):
        raise EventError("the event must be a JSON object")
    return event


def endpoint_request(event: dict[str, Any]) -> tuple[dict[str, Any], Callable[[list], dict]]:
    """The endpoint request for an event, and how to turn the endpoint's predictions into the answer."""
    kind = event.get("type")
    if kind == "rating":
        if "pairs" in event:
            pairs = event["pairs"]
            if not isinstance(pairs, list) or not pairs or not all(_is_pair(p) for p in pairs):
                raise EventError('"pairs" must be a non-empty list of [user_id, item_id]')
            instances = [{"user_id": u, "item_id": i} for u, i in pairs]
            return {"instances": instances}, lambda p: {"ratings": [row["rating"] for row in p]}
        _require(event, "user_id", "item_id")
        instance = {"user_id": event["user_id"], "item_id": event["item_id"]}
        return {"instances": [instance]}, lambda p: {"rating": p[0]["rating"]}
    if kind == "recommendation":
        _require(event, "user_id")
        instance = {"user_id": event["user_id"], "k": event.get("k", 10)}
        if "exclude_rated" in event:
            instance["exclude_rated"] = event["exclude_rated"]
        return {"instances": [instance]}, lambda p: {
            "user_id": event["user_id"],
            "recommendations": p[0]["recommendations"],
        }
    raise EventError(f'"type" must be "rating" or "recommendation", got {kind!r}')


def _is_pair(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2


def _require(event: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if key not in event]
    if missing:
        raise EventError(f"a {event.get('type')} event needs {', '.join(missing)}")


def _endpoint_error(status: int, body: bytes) -> dict[str, Any]:
    try:
        error = json.loads(body)
        if isinstance(error, dict) and "error" in error:
            return {"error": error["error"], "error_type": error.get("error_type", "EndpointError"), "status": status}
    except ValueError:
        pass
    return {"error": body.decode(errors="replace")[:500], "error_type": "EndpointError", "status": status}


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": JSON}, "body": json.dumps(body)}


handler = make_handler()  # what Lambda calls: lambda_function.handler
