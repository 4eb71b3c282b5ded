"""The course's Lambda function shape for an FM endpoint: API Gateway (or a direct invoke) -> Lambda ->
`sagemaker-runtime.invoke_endpoint` with JSON -> the predictions back.

Deploy with handler `fm_client.handler.lambda_handler` and the environment variable ENDPOINT_NAME.
The event is either the request itself or an API Gateway proxy event whose "body" holds it, with one of:
  {"instances": [...]}                     the built-in's JSON request, passed through
  {"features": [...]} / {"data": [...]}    one dense row, or a list of rows
"""

from __future__ import annotations

import json
import os
from typing import Any

_runtime_client: Any = None


def _runtime() -> Any:
    global _runtime_client
    if _runtime_client is None:  # created once per Lambda container, reused by warm invocations
        import boto3

        _runtime_client = boto3.client("sagemaker-runtime")
    return _runtime_client


def request_of(event: Any) -> dict:
    """The endpoint request for an event; ValueError when the event holds none."""
    if isinstance(event, dict) and isinstance(event.get("body"), str):
        event = json.loads(event["body"])
    if not isinstance(event, dict):
        raise ValueError("the event must be a JSON object")
    if isinstance(event.get("instances"), list):
        return {"instances": event["instances"]}
    rows = event.get("features", event.get("data"))
    if not isinstance(rows, list) or not rows:
        raise ValueError('the event needs "instances", or "features"/"data" with one row or a list of rows')
    if not isinstance(rows[0], list):
        rows = [rows]
    return {"instances": [{"features": row} for row in rows]}


def _response(status: int, payload: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(payload)}


def lambda_handler(event: Any, context: Any = None, *, runtime: Any = None, endpoint_name: str | None = None) -> dict:
    """Invoke the endpoint; 200 with {"predictions": [...]}, 400 for a bad event, 502 when the endpoint fails."""
    endpoint = endpoint_name or os.environ.get("ENDPOINT_NAME")
    if not endpoint:
        return _response(500, {"error": "ENDPOINT_NAME is not set"})
    try:
        request = request_of(event)
    except ValueError as err:  # json.JSONDecodeError is a ValueError too
        return _response(400, {"error": str(err)})
    try:
        answer = (runtime or _runtime()).invoke_endpoint(
            EndpointName=endpoint, ContentType="application/json", Accept="application/json", Body=json.dumps(request)
        )
        result = json.loads(answer["Body"].read().decode("utf-8"))
    except Exception as err:  # noqa: BLE001 - the caller gets a JSON error, the Lambda log the details
        print(f"invoke_endpoint({endpoint}) failed: {err!r}", flush=True)
        return _response(502, {"error": f"the endpoint {endpoint} did not answer: {type(err).__name__}"})
    if "predictions" not in result:
        return _response(502, {"error": "the endpoint answered without predictions", "answer": result})
    return _response(200, {"predictions": result["predictions"]})
