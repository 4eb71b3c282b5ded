"""The FM endpoint in-process (Flask test client): every request form, the response shapes, 4xx errors."""

import json

import numpy as np
import pytest

from byoc_runtime.app import create_app
from byoc_runtime.codecs import recordio_protobuf
from byoc_runtime.serving_settings import ServingSettings
from fm_algo import artifact
from fm_algo.model import FMModel

D, K = 6, 3
RNG = np.random.default_rng(0)
W0, W, V = 0.2, RNG.normal(size=D).astype(np.float32), RNG.normal(size=(D, K)).astype(np.float32)
X = np.array([[1, 0, 0, 0.5, 0, 0], [0, 0, 2, 0, 0, 1]], np.float32)


def expected_raw(x):
    xv = x @ V
    return W0 + x @ W + 0.5 * ((xv**2).sum(1) - (x**2) @ (V**2).sum(1))


@pytest.fixture(params=["binary_classifier", "regressor"])
def client(request, tmp_path):
    artifact.save(FMModel(W0, W, V, request.param), tmp_path)
    settings = ServingSettings(model_dir=tmp_path, family="fm_algo.serving", max_payload_mb=1.0, workers=1)
    app = create_app(settings, background_load=False)
    return app.test_client(), request.param


def post(client, body, content_type="application/json", accept=None):
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    return client.post("/invocations", data=body, headers=headers)


def check(predictions, predictor_type):
    raw = expected_raw(X)
    if predictor_type == "binary_classifier":
        prob = 1 / (1 + np.exp(-raw))
        assert np.allclose([p["score"] for p in predictions], prob, atol=1e-5)
        assert [p["predicted_label"] for p in predictions] == [float(p >= 0.5) for p in prob]
    else:
        assert np.allclose([p["score"] for p in predictions], raw, atol=1e-4)
        assert all(set(p) == {"score"} for p in predictions)


SPARSE = {
    "instances": [
        {"data": {"features": {"keys": [0, 3], "shape": [D], "values": [1, 0.5]}}},
        {"data": {"features": {"keys": [2, 5], "shape": [D], "values": [2, 1]}}},
    ]
}


@pytest.mark.parametrize(
    "body, content_type",
    [
        (json.dumps({"instances": [{"features": row} for row in X.tolist()]}), "application/json"),
        (json.dumps(SPARSE), "application/json"),
        ("1,0,0,0.5,0,0\n0,0,2,0,0,1\n", "text/csv"),
        (recordio_protobuf.write_dense(X), "application/x-recordio-protobuf"),
        (
            recordio_protobuf.write_sparse([([0, 3], [1.0, 0.5]), ([2, 5], [2.0, 1.0])], num_cols=D),
            "application/x-recordio-protobuf",
        ),
        ("\n".join(json.dumps(i) for i in SPARSE["instances"]), "application/jsonlines"),
    ],
)
def test_request_forms(client, body, content_type):
    client, predictor_type = client
    response = post(client, body, content_type)
    assert response.status_code == 200, response.get_data(as_text=True)
    check(response.get_json()["predictions"], predictor_type)


def test_response_types(client):
    client, predictor_type = client
    lines = post(client, "1,0,0,0.5,0,0\n0,0,2,0,0,1", "text/csv", accept="application/jsonlines")
    check([json.loads(line) for line in lines.get_data(as_text=True).splitlines()], predictor_type)
    rec = post(client, "1,0,0,0.5,0,0\n0,0,2,0,0,1", "text/csv", accept="application/x-recordio-protobuf")
    records = list(recordio_protobuf.read_records(rec.data))
    check([{k: v.float32_tensor.values[0] for k, v in r.label.items()} for r in records], predictor_type)


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        ('{"instances": [{"features": [1, 2]}]}', "application/json", 400),  # wrong feature_dim
        (
            '{"instances": [{"data": {"features": {"keys": [9], "shape": [6], "values": [1]}}}]}',
            "application/json",
            400,
        ),
        (
            '{"instances": [{"data": {"features": {"keys": ["a"], "shape": [6], "values": [1]}}}]}',
            "application/json",
            400,
        ),
        (
            '{"instances": [{"data": {"features": {"keys": [1, 2], "shape": [6], "values": [1]}}}]}',
            "application/json",
            400,
        ),
        ('{"instances": [{"data": 5}]}', "application/json", 400),
        ('{"instances": [["a", "b"]]}', "application/json", 400),
        ('{"instances": []}', "application/json", 400),
        ("1,2,3\n", "text/csv", 400),
        ("nan,0,0,0,0,0\n", "text/csv", 400),
        (b"\x00\x01garbage", "application/x-recordio-protobuf", 400),
        ("<x/>", "application/xml", 415),
    ],
)
def test_bad_requests_are_4xx_json(client, body, content_type, status):
    client, _ = client
    response = post(client, body, content_type)
    assert response.status_code == status, response.get_data(as_text=True)
    assert set(response.get_json()) == {"error", "error_type"}


def test_loads_the_npz_without_mxnet(tmp_path):
    artifact.save(FMModel(W0, W, V, "regressor"), tmp_path)
    assert (tmp_path / artifact.NPZ_NAME).is_file()
    model = artifact.load(tmp_path)
    assert np.array_equal(model.V, V) and model.predictor_type == "regressor" and model.w0 == pytest.approx(W0)
