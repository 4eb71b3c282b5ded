"""The course's rec-engine Lambda function, in front of two endpoints (`lambda_function.lambda_handler`).

The course's events (its "Recommendation_Engine_Object2Vec" function), answered as the course's answers them:
  {"data": "{ \"instances\": [{\"in0\": [789], \"in1\": [286]}]}", "type": "rating"}
      -> "The User will likely rate this movie to [4.42]"            (the rating endpoint's scores)
  {"data": "...", "type": "recommendation"}  (any type other than "rating")
      -> "We recommend the user this movie."  when the classifier's scores[1] > 0.5,
         "We DO NOT recommend the user this movie."  otherwise
`data` is sent unchanged, byte for byte, as the request body (Content-Type application/json) to the endpoint
named by $ENDPOINT_NAME_RATING (type "rating") or $ENDPOINT_NAME_REC (any other type); the course README's
spellings $ENDPOINT_NANE_RATING / $ENDPOINT_NANE_REC are accepted too (the correct one wins when both are set).
With several instances in `data` the answer is a list of those sentences, one per instance (the course's
function answered the first only); `"format": "json"` in the event returns the endpoint's decoded answer instead.
A failure raises (Lambda reports errorType/errorMessage): ConfigurationError (no endpoint name set),
EventError (a bad event), EndpointError (the endpoint failed, is unknown or answered something unexpected; the
message names the endpoint and quotes the container's error).

This image's richer events (a plain Lambda event, or an API Gateway proxy event whose "body" is that JSON):
  {"type": "rating", "user_id": 196, "item_id": 242}                   -> {"rating": 3.9}
  {"type": "rating", "pairs": [[196, 242], [186, 302]]}                 -> {"ratings": [3.9, 3.1]}
  {"type": "recommendation", "user_id": 196, "k": 10, "exclude_rated": true}
      -> {"user_id": 196, "recommendations": [{"item_id", "score", "title"?}, ...]}
are answered as an API Gateway proxy response: {"statusCode", "headers", "body": JSON}. A bad event is a 400
here; the endpoint's own 4xx (unknown ids, ...) is passed through with its message; anything else is a 502.
They go to $ENDPOINT_NAME (or, when it is not set, the endpoint of their type above). A course event that
comes through API Gateway (its JSON in "body") is answered as a proxy response as well.

Endpoints are called through an Invoker, `(content_type, body, accept) -> (status, body)`: by default boto3's
sagemaker-runtime InvokeEndpoint, with a client created the standard way (`boto3.client("sagemaker-runtime")`:
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, AWS_REGION and the usual credential chain apply); tests inject one that
calls a running container (`http_invoker`) or a local InvokeEndpoint stand-in (local/runtime_proxy.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

Invoker = Callable[[str, bytes, str], tuple[int, bytes]]
JSON = "application/json"
RATING_ENDPOINT_VARIABLES = ("ENDPOINT_NAME_RATING", "ENDPOINT_NANE_RATING")
REC_ENDPOINT_VARIABLES = ("ENDPOINT_NAME_REC", "ENDPOINT_NANE_REC")


class EventError(ValueError):
    """The event cannot be turned into an endpoint request."""


class ConfigurationError(RuntimeError):
    """The function's environment does not name the endpoint an event needs."""


class EndpointError(RuntimeError):
    """The endpoint failed, does not exist, or answered something the event cannot use."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


# The settings a client is made from; a warm Lambda reuses its client while they stay the same.
CLIENT_ENVIRONMENT = (
    "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
)
_clients: dict[tuple[str | None, ...], Any] = {}


def runtime_client() -> Any:
    """boto3's sagemaker-runtime client, created the standard way (endpoint URL, region, credentials from the
    environment and the usual chain), once per set of those settings."""
    key = tuple(os.environ.get(variable) for variable in CLIENT_ENVIRONMENT)
    if key not in _clients:
        import boto3

        _clients[key] = boto3.client("sagemaker-runtime")
    return _clients[key]


def sagemaker_runtime_invoker(endpoint_name: str | None = None, client: Any = None) -> Invoker:
    """InvokeEndpoint through boto3 (or any client with its signature, e.g. the SDK's local-mode client).

    A container's error answer (botocore's ModelError, which carries the container's status and body) comes
    back as that status and body; any other failure of the call raises EndpointError naming the endpoint."""
    name = endpoint_name or os.environ.get("ENDPOINT_NAME")
    if not name:
        raise ConfigurationError("no endpoint: set ENDPOINT_NAME")

    def invoke(content_type: str, body: bytes, accept: str) -> tuple[int, bytes]:
        nonlocal client
        if client is None:
            client = runtime_client()
        try:
            response = client.invoke_endpoint(EndpointName=name, ContentType=content_type, Accept=accept, Body=body)
        except Exception as err:  # botocore ClientError "ModelError" carries the container's status and body
            details = getattr(err, "response", None) or {}
            if "OriginalStatusCode" in details:
                message = details.get("OriginalMessage") or details.get("Error", {}).get("Message", "")
                return int(details["OriginalStatusCode"]), str(message).encode()
            raise EndpointError(f"InvokeEndpoint on endpoint {name!r} failed: {_describe(err)}") from err
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


def make_handler(
    invoker: Invoker | None = None, invoker_for: Callable[[str], Invoker] | None = None
) -> Callable[[dict, Any], Any]:
    """A Lambda handler. `invoker` answers every event (one endpoint for all); otherwise `invoker_for(name)` gives
    the invoker of the endpoint an event is sent to (default: boto3's sagemaker-runtime on that endpoint)."""

    def invoker_of(name: str | None) -> Invoker:
        if invoker is not None:
            return invoker
        if name is None:
            raise ConfigurationError("no endpoint: set ENDPOINT_NAME")
        return (invoker_for or sagemaker_runtime_invoker)(name)

    def handler(event: dict, context: Any = None) -> Any:
        proxied = _is_proxy_event(event)
        try:
            event = parse_event(event)
        except EventError as err:
            return _response(400, {"error": str(err), "error_type": "BadEvent"})
        if "data" in event:
            return _course_event(event, invoker_of, proxied, name_required=invoker is None)
        try:
            request, unpack = endpoint_request(event)
            call = invoker_of(os.environ.get("ENDPOINT_NAME") or _typed_endpoint(event.get("type"), required=False))
            status, body = call(JSON, json.dumps(request).encode(), JSON)
        except EventError as err:
            return _response(400, {"error": str(err), "error_type": "BadEvent"})
        except (ConfigurationError, EndpointError) as err:
            return _error_response(err)
        if status != 200:
            return _response(status if 400 <= status < 500 else 502, _endpoint_error(status, body))
        try:
            return _response(200, unpack(json.loads(body)["predictions"]))
        except (ValueError, KeyError, TypeError, IndexError):
            return _response(502, {"error": "the endpoint's answer was not understood", "error_type": "BadGateway"})

    return handler


# ---------------------------------------------------------------------- the course's events
def _course_event(
    event: dict[str, Any], invoker_of: Callable[[str | None], Invoker], proxied: bool, name_required: bool
) -> Any:
    try:
        answer = course_answer(event, invoker_of, name_required)
    except (EventError, ConfigurationError, EndpointError) as err:
        if not proxied:
            raise
        return _error_response(err)
    return _response(200, answer) if proxied else answer


def course_answer(
    event: dict[str, Any], invoker_of: Callable[[str | None], Invoker], name_required: bool = True
) -> Any:
    """Forward `data` unchanged to the endpoint of `type`; the course's sentence(s), or the decoded answer.
    (`name_required` False: an injected invoker answers, and the endpoint variables may be unset.)"""
    data, kind = event["data"], event.get("type")
    if kind is None:
        raise EventError('the event has "data" but no "type": use "rating" or "recommendation"')
    if isinstance(data, str):
        body = data.encode()
    elif isinstance(data, dict | list):  # an event written with the request as an object, not a string
        body = json.dumps(data).encode()
    else:
        raise EventError(f'"data" must be the request body as a JSON string, got {type(data).__name__}')
    name = _typed_endpoint(kind, required=name_required) or "the injected invoker"
    print(f"{kind} event -> endpoint {name}")
    status, payload = invoker_of(name)(JSON, body, JSON)
    if status != 200:
        error = _endpoint_error(status, payload)["error"]
        raise EndpointError(f"endpoint {name!r} answered {status}: {error}", status if 400 <= status < 500 else 502)
    try:
        result = json.loads(payload)
    except ValueError:
        raise EndpointError(f"endpoint {name!r} answered something that is not JSON: {payload[:200]!r}") from None
    if event.get("format") == "json":
        return result
    predictions = result.get("predictions") if isinstance(result, dict) else None
    if not isinstance(predictions, list) or not predictions:
        raise EndpointError(f'endpoint {name!r} answered without "predictions": {str(result)[:200]}')
    sentences = [_sentence(kind, name, number, prediction) for number, prediction in enumerate(predictions)]
    return sentences[0] if len(sentences) == 1 else sentences


def _sentence(kind: str, name: str, number: int, prediction: Any) -> str:
    scores = prediction.get("scores") if isinstance(prediction, dict) else None
    if not isinstance(scores, list) or not scores:
        raise EndpointError(f'endpoint {name!r}: prediction {number} has no "scores": {str(prediction)[:200]}')
    if kind == "rating":
        return f"The User will likely rate this movie to {scores}"
    if len(scores) < 2:
        raise EndpointError(
            f"endpoint {name!r} answered scores {scores} for prediction {number}: a recommendation needs a "
            "classifier's [p0, p1] (output_layer softmax); is $ENDPOINT_NAME_REC the rating model?"
        )
    if scores[1] > 0.5:
        return "We recommend the user this movie."
    return "We DO NOT recommend the user this movie."


def _typed_endpoint(kind: Any, required: bool) -> str | None:
    """The endpoint of an event type: $ENDPOINT_NAME_RATING for "rating", $ENDPOINT_NAME_REC for any other
    (or the course README's ENDPOINT_NANE_* spellings)."""
    variables = RATING_ENDPOINT_VARIABLES if kind == "rating" else REC_ENDPOINT_VARIABLES
    for variable in variables:
        if os.environ.get(variable):
            return os.environ[variable]
    if not required:
        return None
    correct, course_spelling = variables
    raise ConfigurationError(
        f"a {kind!r} event is sent to the endpoint named by ${correct} (or ${course_spelling}, as the course "
        "README spells it), and neither is set"
    )


# ---------------------------------------------------------------------- this image's richer events
def parse_event(event: Any) -> dict[str, Any]:
    if _is_proxy_event(event):  # API Gateway proxy integration
        try:
            event = json.loads(event["body"])
        except ValueError as err:
            raise EventError(f"the request body is not JSON: {err}") from None
    if not isinstance(event, dict):
        raise EventError("the event must be a JSON object")
    return event


def _is_proxy_event(event: Any) -> bool:
    return isinstance(event, dict) and isinstance(event.get("body"), str)


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
    raise EventError(
        f'"type" must be "rating" or "recommendation", got {kind!r} '
        '(or send the course\'s {"data": "<request JSON>", "type": ...})'
    )


def _is_pair(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2


def _require(event: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if key not in event]
    if missing:
        raise EventError(f'a {event.get("type")} event needs {", ".join(missing)} (or the course\'s "data")')


def _endpoint_error(status: int, body: bytes) -> dict[str, Any]:
    try:
        error = json.loads(body)
        if isinstance(error, dict) and "error" in error:
            return {"error": error["error"], "error_type": error.get("error_type", "EndpointError"), "status": status}
    except ValueError:
        pass
    return {"error": body.decode(errors="replace")[:500], "error_type": "EndpointError", "status": status}


def _describe(err: Exception) -> str:
    details = getattr(err, "response", None) or {}
    error = details.get("Error") if isinstance(details, dict) else None
    if error:
        return f"{error.get('Code', type(err).__name__)}: {error.get('Message', '')}"
    return f"{type(err).__name__}: {err}"


def _error_response(err: Exception) -> dict[str, Any]:
    """A proxy response for a failure: 400 a bad event, 500 a missing setting, the endpoint's 4xx or 502."""
    if isinstance(err, EventError):
        status = 400
    elif isinstance(err, EndpointError):
        status = err.status
    else:
        status = 500
    return _response(status, {"error": str(err), "error_type": type(err).__name__})


def _response(status: int, body: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": JSON}, "body": json.dumps(body)}


lambda_handler = make_handler()  # what a Lambda console calls by default: lambda_function.lambda_handler
handler = lambda_handler  # the name this module's earlier releases documented
