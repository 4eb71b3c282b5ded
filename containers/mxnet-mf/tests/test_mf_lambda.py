"""The Lambda-style handlers, invoking the real serving code in-process (Flask test client) and the
boto3 error path of InvokeEndpoint (a botocore ModelError carries the container's status)."""

import json

import botocore.exceptions
import pytest

from byoc_runtime.app import create_app
from byoc_runtime.serving_settings import ServingSettings
from mxnet_mf.lambda_function import make_handler, sagemaker_runtime_invoker


@pytest.fixture
def handler(mf_model_dir):
    settings = ServingSettings(model_dir=mf_model_dir, family="mxnet_mf.serving", workers=1)
    client = create_app(settings, background_load=False).test_client()

    def invoke(content_type, body, accept):
        response = client.post("/invocations", data=body, headers={"Content-Type": content_type, "Accept": accept})
        return response.status_code, response.data

    return make_handler(invoke)


def answer(response):
    return response["statusCode"], json.loads(response["body"])


def test_rating_and_recommendation_events(handler):
    status, body = answer(handler({"type": "rating", "user_id": 10, "item_id": 300}))
    assert status == 200 and body["rating"] == pytest.approx(4.9)
    status, body = answer(handler({"type": "rating", "pairs": [[10, 300], [20, 200]]}))
    assert body["ratings"] == pytest.approx([4.9, 3.9])
    status, body = answer(handler({"body": json.dumps({"type": "recommendation", "user_id": 10, "k": 2})}))
    assert status == 200 and body["user_id"] == 10 and len(body["recommendations"]) == 2


@pytest.mark.parametrize(
    "event, status, message",
    [
        ({"type": "rating", "user_id": 10}, 400, "needs item_id"),
        ({"type": "forecast"}, 400, '"type" must be'),
        ({"body": "{not json"}, 400, "not JSON"),
        ({"type": "rating", "pairs": [[1]]}, 400, "pairs"),
        ({"type": "rating", "user_id": 99, "item_id": 100}, 400, "unknown user id"),  # the endpoint's own 400
    ],
)
def test_bad_events(handler, event, status, message):
    got, body = answer(handler(event))
    assert got == status and message in body["error"]


class ModelErrorClient:
    """What boto3's sagemaker-runtime raises when the container answers 4xx."""

    def invoke_endpoint(self, **kwargs):
        assert kwargs["EndpointName"] == "mf-endpoint"
        raise botocore.exceptions.ClientError(
            {
                "Error": {"Code": "ModelError", "Message": "Received client error (400)"},
                "OriginalStatusCode": 400,
                "OriginalMessage": '{"error": "unknown user", "error_type": "BadRequest"}',
            },
            "InvokeEndpoint",
        )


def test_model_errors_from_boto3_keep_the_containers_status(monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", "mf-endpoint")
    handler = make_handler(sagemaker_runtime_invoker(client=ModelErrorClient()))
    status, body = answer(handler({"type": "rating", "user_id": 1, "item_id": 2}))
    assert status == 400 and body == {"error": "unknown user", "error_type": "BadRequest", "status": 400}
