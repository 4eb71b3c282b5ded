"""The server in-process (Flask test client): every route, every error status, handler overrides."""

import io
import json
import threading
import time

import numpy as np
import pytest

from byoc_runtime import codecs
from byoc_runtime.app import create_app
from byoc_runtime.codecs import recordio_protobuf
from byoc_runtime.handlers import Handlers, resolve
from byoc_runtime.serving_settings import ServingSettings


def settings_for(model_dir, **overrides):
    values = {"model_dir": model_dir, "family": "linear_family.serving", "max_payload_mb": 1.0, "workers": 3}
    values.update(overrides)
    return ServingSettings(**values)


@pytest.fixture
def client(linear_model_dir):
    app = create_app(settings_for(linear_model_dir), background_load=False)
    return app.test_client()


def post(client, body, content_type="application/json", accept=None):
    headers = {"Content-Type": content_type} if content_type else {}
    if accept:
        headers["Accept"] = accept
    return client.post("/invocations", data=body, headers=headers)


def test_ping_and_execution_parameters(client):
    assert client.get("/ping").status_code == 200
    params = client.get("/execution-parameters").get_json()
    assert params == {"MaxConcurrentTransforms": 3, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b'{"instances": [[1, 0, 0], [0, 0, 1]]}', "application/json"),
        (b"[[1, 0, 0], [0, 0, 1]]", "application/json"),
        (b'{"instances": [{"features": [1, 0, 0]}, {"features": [0, 0, 1]}]}', "application/json"),
        (b"1,0,0\n0,0,1\n", "text/csv"),
        (b"[1,0,0]\n[0,0,1]\n", "application/jsonlines"),
    ],
)
def test_invocations_every_request_format(client, body, content_type):
    response = post(client, body, content_type)
    assert response.status_code == 200, response.data
    assert response.get_json() == {"predictions": [{"score": 1.5}, {"score": 3.5}]}


def test_invocations_npy_and_recordio(client):
    x = np.array([[1, 0, 0], [0, 0, 1]], dtype=np.float32)
    buffer = io.BytesIO()
    np.save(buffer, x)
    assert post(client, buffer.getvalue(), "application/x-npy").get_json()["predictions"][1]["score"] == 3.5
    response = post(client, recordio_protobuf.write_dense(x), "application/x-recordio-protobuf")
    assert response.get_json() == {"predictions": [{"score": 1.5}, {"score": 3.5}]}


def test_response_formats(client):
    body = b"[[1, 0, 0], [0, 0, 1]]"
    assert post(client, body, accept="text/csv").data == b"1.5\n3.5\n"
    assert post(client, body, accept="application/jsonlines").data == b'{"score":1.5}\n{"score":3.5}\n'
    npy = post(client, body, accept="application/x-npy")
    assert npy.mimetype == "application/x-npy" and np.load(io.BytesIO(npy.data)).tolist() == [1.5, 3.5]
    assert post(client, body, accept="*/*").mimetype == "application/json"


@pytest.mark.parametrize(
    "body, content_type, accept, status, error_type",
    [
        (b"<x/>", "application/xml", None, 415, "UnsupportedMediaType"),
        (b"{nope", "application/json", None, 400, "BadRequest"),
        (b'{"instances": [["a", "b", "c"]]}', "application/json", None, 400, "BadRequest"),
        (b"[[1, 2]]", "application/json", None, 400, "BadRequest"),
        (b"", "application/json", None, 400, "BadRequest"),
        (b"1,2,3\n4,5\n", "text/csv", None, 400, "BadRequest"),
        (b"\x93NUMPY garbage", "application/x-npy", None, 400, "BadRequest"),
        (b"\x00\x01\x02\x03", "application/x-recordio-protobuf", None, 400, "BadRequest"),
        (b"[[1, 0, 0]]", "application/json", "image/png", 406, "NotAcceptable"),
    ],
)
def test_errors_are_json_with_the_right_status(client, body, content_type, accept, status, error_type):
    response = post(client, body, content_type, accept)
    assert response.status_code == status
    payload = response.get_json()
    assert payload["error_type"] == error_type and payload["error"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_payload_limit_is_413_json(client):
    response = post(client, b"1," * (600 * 1024), "text/csv")
    assert response.status_code == 413
    assert response.get_json()["error_type"] == "PayloadTooLarge"


def test_an_answer_over_the_response_limit_is_413_saying_how_many_instances_fit(linear_model_dir):
    handlers = Handlers(model_fn=lambda d: object(), predict_fn=lambda data, model: [{"row": "x" * 1000}] * data["n"])
    settings = settings_for(linear_model_dir, max_response_mb=0.01)  # 10,485 bytes
    client = create_app(settings, handlers, background_load=False).test_client()
    response = post(client, b'{"n": 20}')
    assert response.status_code == 413 and response.get_json()["error_type"] == "PayloadTooLarge"
    reason = response.get_json()["error"]
    assert "over the 10485-byte limit" in reason and "its 20 predictions average" in reason, reason
    fit = int(reason.split("send at most ")[1].split()[0])
    assert post(client, json.dumps({"n": fit}).encode()).status_code == 200
    assert post(client, json.dumps({"n": fit + 1}).encode()).status_code == 413
    assert ServingSettings.from_env({}).max_response_bytes == 6 * 1024 * 1024
    assert ServingSettings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}).max_response_mb == 100
    assert ServingSettings.from_env({"BYOC_MAX_RESPONSE_MB": "0"}).max_response_bytes is None


def test_wrong_routes_are_json(client):
    assert client.get("/nope").get_json()["error_type"] == "NotFound"
    assert client.get("/invocations").status_code == 405
    assert client.get("/invocations").get_json()["error_type"] == "MethodNotAllowed"


def test_a_thousand_bad_requests_then_a_good_one(client):
    bad = [(b"{", "application/json"), (b"x", "application/xml"), (b"1,2\n3", "text/csv")]
    for i in range(1000):
        body, content_type = bad[i % 3]
        assert post(client, body, content_type).status_code in (400, 415)
    assert post(client, b"[[0, 1, 0]]").get_json() == {"predictions": [{"score": 2.5}]}


def test_a_bug_in_a_handler_is_a_500_without_traceback(linear_model_dir):
    def broken_predict(data, model):
        raise RuntimeError("secret internal detail")

    handlers = Handlers(model_fn=lambda d: object(), predict_fn=broken_predict)
    client = create_app(settings_for(linear_model_dir), handlers, background_load=False).test_client()
    response = post(client, b"[1]")
    assert response.status_code == 500 and "secret" not in response.get_data(as_text=True)


def test_ping_is_503_until_the_model_is_loaded(linear_model_dir):
    release = threading.Event()

    def slow_model_fn(model_dir):
        release.wait(10)
        return lambda x: np.asarray(x).sum(axis=1)

    app = create_app(settings_for(linear_model_dir), Handlers(model_fn=slow_model_fn), background_load=True)
    client = app.test_client()
    response = client.get("/ping")
    assert response.status_code == 503 and response.get_json()["error_type"] == "ModelNotReady"
    release.set()
    deadline = time.time() + 5
    while client.get("/ping").status_code != 200 and time.time() < deadline:
        time.sleep(0.01)
    assert client.get("/ping").status_code == 200
    assert post(client, b"[[1, 2]]").get_json() == [3]


def test_model_that_fails_to_load_says_why_on_ping(linear_model_dir):
    def failing_model_fn(model_dir):
        raise FileNotFoundError("model.npz is missing")

    app = create_app(settings_for(linear_model_dir), Handlers(model_fn=failing_model_fn), background_load=False)
    response = app.test_client().get("/ping")
    assert response.status_code == 503 and "model.npz is missing" in response.get_json()["error"]


USER_SCRIPT = """
import json
ACCEPTS = ["application/json"]

def input_fn(body, content_type):
    return json.loads(body)["value"]

def predict_fn(data, model):
    return {"doubled": data * 2, "model": type(model).__name__}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def test_user_inference_py_in_model_code_dir_overrides_the_family(linear_model_dir):
    (linear_model_dir / "code").mkdir()
    (linear_model_dir / "code" / "inference.py").write_text(USER_SCRIPT)
    handlers = resolve(settings_for(linear_model_dir))
    assert handlers.source == "user_inference"
    client = create_app(settings_for(linear_model_dir), handlers, background_load=False).test_client()
    assert post(client, b'{"value": 21}').get_json() == {"doubled": 42, "model": "LinearModel"}
    assert post(client, b'{"value": 1}', accept="text/csv").status_code == 406


def test_user_script_from_sagemaker_program(linear_model_dir, tmp_path):
    code = tmp_path / "src"
    code.mkdir()
    (code / "my_handlers.py").write_text(USER_SCRIPT)
    settings = settings_for(linear_model_dir, program="my_handlers.py", submit_directory=f"file://{code}")
    client = create_app(settings, background_load=False).test_client()
    assert post(client, b'{"value": 2}').get_json()["doubled"] == 4


def test_transform_fn_legacy_signature(linear_model_dir, tmp_path):
    code = tmp_path / "src"
    code.mkdir()
    (code / "legacy.py").write_text(
        "import json\n"
        "def transform_fn(net, data, input_content_type, output_content_type):\n"
        "    return json.dumps({'got': json.loads(data), 'ct': input_content_type}), output_content_type\n"
    )
    settings = settings_for(linear_model_dir, program="legacy.py", submit_directory=str(code))
    client = create_app(settings, background_load=False).test_client()
    response = post(client, b"[1, 2]")
    assert json.loads(response.data) == {"got": [1, 2], "ct": "application/json"}


def test_settings_from_environment():
    settings = ServingSettings.from_env(
        {
            "SAGEMAKER_BIND_TO_PORT": "9000",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100",
            "BYOC_SERVE": "fam",
        }
    )
    assert (settings.port, settings.workers, settings.timeout, settings.max_payload_bytes, settings.family) == (
        9000,
        3,
        30,
        100 * 1024 * 1024,
        "fam",
    )


def test_codecs_module_is_what_the_family_uses():
    assert codecs.negotiate("application/json") == "application/json"
