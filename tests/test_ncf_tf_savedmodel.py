"""ncf-tf serves any SavedModel as SageMaker's TensorFlow Serving container does: TF Serving's layouts (one model
at the top with several versions; several models by name, the default from SAGEMAKER_TFS_DEFAULT_MODEL_NAME),
any signature, row and columnar requests with TF Serving's answer shapes, classify/regress on tf.Examples, the
model, version and verb from X-Amzn-SageMaker-Custom-Attributes, TF-Serving-style errors; and a model that
cannot be loaded stops serve with the reason last. The SavedModels and TensorFlow's own answers for them are
made in the image (containers/ncf-tf/tests/savedmodel_fixtures.py): the test host has no TensorFlow."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import docker
import numpy as np
import pytest

from tests.images import ROOT, build_image

pytestmark = pytest.mark.docker
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
CLOSE = {"rtol": 1e-5, "atol": 1e-6}  # the signature and Keras' predict may differ in the last float32 bit


@pytest.fixture(scope="module")
def image():
    return build_image("ncf-tf")


@pytest.fixture(scope="module")
def models(image, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("savedmodels")
    docker.from_env().containers.run(
        image,
        ["python", "/fixtures/savedmodel_fixtures.py", "/out"],
        entrypoint=[],
        remove=True,
        user=str(os.getuid()),
        environment={"TF_CPP_MIN_LOG_LEVEL": "3"},
        volumes={
            str(ROOT / "containers" / "ncf-tf" / "tests"): {"bind": "/fixtures", "mode": "ro"},
            str(out): {"bind": "/out", "mode": "rw"},
        },
    )
    out.chmod(0o755)
    return out


@pytest.fixture(scope="module")
def expected(models) -> dict:
    return json.loads((models / "expected.json").read_text())


@pytest.fixture(scope="module")
def several(harness, image, models):
    """/opt/ml/model/<name>/<version>/: five models, onehot the default."""
    env = {"SAGEMAKER_TFS_DEFAULT_MODEL_NAME": "onehot", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
    with harness.serve(image, models / "multi", environment=env) as endpoint:
        yield endpoint
        endpoint.session.close()


@pytest.fixture(scope="module")
def single(harness, image, models):
    """/opt/ml/model/<version>/: versions 000000001 and 000000003 of one model."""
    with harness.serve(image, models / "single", environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}) as endpoint:
        yield endpoint
        endpoint.session.close()


def post(endpoint, body, attributes=None, content_type="application/json", accept=None):
    headers = {"Content-Type": content_type}
    if attributes:
        headers[ATTRIBUTES] = attributes
    if accept:
        headers["Accept"] = accept
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return endpoint.session.post(f"{endpoint.url}/invocations", data=data, headers=headers, timeout=60)


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error(response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type"} and "Traceback" not in body["error"], body
    for fragment in fragments:
        assert fragment in body["error"], body
    return body["error"]


def one_hot_instances(expected) -> list[dict]:
    inputs = expected["onehot_inputs"]
    return [{"input_1": u, "input_2": i} for u, i in zip(inputs["input_1"], inputs["input_2"], strict=True)]


# ------------------------------------------------------------------------------------------ one model, versions
def test_the_newest_version_answers_with_tf_servings_shapes(single, expected):
    rows = ok(post(single, {"instances": one_hot_instances(expected)}))
    assert list(rows) == ["predictions"] and np.array(rows["predictions"]).shape == (4, 1)
    np.testing.assert_allclose(rows["predictions"], expected["single_v3"], **CLOSE)
    columns = ok(post(single, {"inputs": expected["onehot_inputs"]}))
    assert columns == {"outputs": rows["predictions"]}
    # SageMaker's container: a body without instances/inputs is one instance
    bare = ok(post(single, one_hot_instances(expected)[0]))
    assert bare == {"predictions": rows["predictions"][:1]}


def test_a_version_and_the_model_by_name(single, expected):
    old = ok(post(single, {"instances": one_hot_instances(expected)}, "tfs-model-version=1"))
    np.testing.assert_allclose(old["predictions"], expected["single_v1"], **CLOSE)
    named = ok(post(single, {"instances": one_hot_instances(expected)}, "tfs-model-name=model,tfs-model-version=3"))
    np.testing.assert_allclose(named["predictions"], expected["single_v3"], **CLOSE)
    error(post(single, {"instances": one_hot_instances(expected)}, "tfs-model-version=2"), 404,
          "Servable not found for request: Specific(model, 2)", "versions: 1, 3")  # fmt: skip
    error(post(single, {"instances": one_hot_instances(expected)}, "tfs-model-name=other"), 404,
          "Servable not found for request: Latest(other)")  # fmt: skip


def test_a_keras_model_has_no_classify_or_regress(single):
    examples = {"examples": [{"input_1": [1.0]}]}
    error(post(single, examples, "tfs-method=classify"), 400,
          "Expected classification signature method_name to be tensorflow/serving/classify. "
          "Was: tensorflow/serving/predict")  # fmt: skip
    error(post(single, examples, "tfs-method=regress"), 400, "Expected regression signature method_name")
    error(post(single, examples), 400, "Missing 'inputs' or 'instances' key", "tfs-method=classify")
    error(post(single, {"instances": [1]}, "tfs-method=explain"), 400, "not one of predict, classify, regress")


def test_bad_requests_are_tf_serving_errors(single, expected):
    instance = one_hot_instances(expected)[0]
    error(
        post(single, {"instances": [{"input_1": instance["input_1"]}]}), 400, "keys must be equal to: input_1,input_2"
    )
    error(post(single, {"instances": [instance["input_1"]]}), 400, "expecting list of objects")
    error(post(single, {"instances": [{**instance, "input_1": [1, 0]}]}), 400,
          "input 'input_1' has shape [1, 2] but signature 'serving_default' takes float32 [-1, 7]")  # fmt: skip
    error(post(single, {"signature_name": "nope", "instances": [instance]}), 400,
          'Serving signature name: "nope" not found in signature def')  # fmt: skip
    error(post(single, {"instances": [instance], "inputs": {}}), 400, "not both")
    error(post(single, {"instances": []}), 400, "No values")
    error(post(single, "{not json"), 400)


# ------------------------------------------------------------------------------------------ several models
def test_the_default_model_and_others_by_name(several, expected):
    default = ok(post(several, {"instances": one_hot_instances(expected)}))
    np.testing.assert_allclose(default["predictions"], expected["onehot"], **CLOSE)
    named = ok(post(several, {"instances": one_hot_instances(expected)}, "tfs-model-name=onehot,tfs-model-version=1"))
    assert named == default
    error(post(several, {"instances": [1]}, "tfs-model-name=model"), 404, "Latest(model)", "examples, linear3")


def test_multiple_inputs_and_outputs_in_both_formats(several, expected):
    want = expected["multi_io"]
    rows = ok(post(several, {"instances": [{"a": a, "b": b} for a, b in zip(want["a"], want["b"], strict=True)]},
                   "tfs-model-name=multi_io"))  # fmt: skip
    assert [sorted(p) for p in rows["predictions"]] == [["logits", "score"]] * 3
    np.testing.assert_allclose([p["score"] for p in rows["predictions"]], want["score"], **CLOSE)
    np.testing.assert_allclose([p["logits"] for p in rows["predictions"]], want["logits"], **CLOSE)
    columns = ok(post(several, {"inputs": {"a": want["a"], "b": want["b"]}}, "tfs-model-name=multi_io"))
    assert sorted(columns["outputs"]) == ["logits", "score"]
    assert columns["outputs"]["score"] == [p["score"] for p in rows["predictions"]]
    assert columns["outputs"]["logits"] == [p["logits"] for p in rows["predictions"]]
    error(post(several, {"instances": [{"a": [1, 2, 3], "b": 0.5}]}, "tfs-model-name=multi_io"), 400,
          "input 'b': expected integers (int32)")  # fmt: skip
    error(post(several, {"instances": want["a"]}, "tfs-model-name=multi_io"), 400, "expecting list of objects")


def test_another_signature_by_name(several, expected):
    want = expected["multi_io"]
    rows = ok(post(several, {"signature_name": "total", "instances": want["a"]}, "tfs-model-name=multi_io"))
    np.testing.assert_allclose(rows["predictions"], want["total"], **CLOSE)
    assert np.array(rows["predictions"]).shape == (3,)  # one output: the values themselves
    columns = ok(post(several, {"signature_name": "total", "inputs": want["a"]}, "tfs-model-name=multi_io"))
    assert columns == {"outputs": rows["predictions"]}


def test_json_lines_csv_and_bare_lists_are_instances(several, expected):
    want = expected["linear3"]
    attributes = "tfs-model-name=linear3"
    assert ok(post(several, {"instances": want["x"]}, attributes))["predictions"] == want["y"]  # [1.5, 7.5]
    assert ok(post(several, want["x"], attributes)) == {"predictions": want["y"]}
    csv = "\n".join(",".join(map(str, row)) for row in want["x"])
    assert ok(post(several, csv, attributes, content_type="text/csv")) == {"predictions": want["y"]}
    lines = "".join(json.dumps(row) + "\n" for row in want["x"])
    answer = post(several, lines, attributes, content_type="application/jsonlines", accept="application/jsonlines")
    assert answer.status_code == 200 and [json.loads(line) for line in answer.text.splitlines()] == want["y"]


def test_classify_and_regress_on_tf_examples(several, expected):
    want = expected["examples"]
    classified = ok(post(several, {"examples": want["examples"]}, "tfs-model-name=examples,tfs-method=classify"))
    assert [[label for label, _ in row] for row in classified["results"]] == [["yes", "no"], ["yes", "no"]]
    np.testing.assert_allclose([[s for _, s in row] for row in classified["results"]], want["scores"], **CLOSE)
    body = {"signature_name": "regress", "examples": want["examples"]}
    regressed = ok(post(several, body, "tfs-method=regress,tfs-model-name=examples"))
    np.testing.assert_allclose(regressed["results"], want["values"], **CLOSE)
    # the context's features are every example's
    with_context = {"context": {"k": 3}, "examples": [{"x": [0.25, 2.0]}]}
    context = ok(post(several, with_context, "tfs-model-name=examples,tfs-method=classify"))
    assert context["results"] == classified["results"][1:]
    error(post(several, {"examples": want["examples"]}, "tfs-model-name=examples,tfs-method=regress"), 400,
          "Expected regression signature method_name to be tensorflow/serving/regress. "
          "Was: tensorflow/serving/classify")  # fmt: skip
    error(post(several, {"examples": [{"x": [1, 0.5]}]}, "tfs-model-name=examples,tfs-method=classify"), 400,
          "Unexpected element type in feature: x")  # fmt: skip


def test_strings_and_bytes(several):
    raw = base64.b64encode(b"\xffab").decode()
    answer = ok(post(several, {"instances": ["abc", {"b64": raw}]}, "tfs-model-name=strings"))
    upper = [{"b64": base64.b64encode(text).decode()} for text in (b"ABC", b"\xffAB")]  # *_bytes: always base64
    assert answer == {"predictions": [{"length": 3, "upper_bytes": upper[0]}, {"length": 3, "upper_bytes": upper[1]}]}
    error(post(several, {"instances": [1, 2]}, "tfs-model-name=strings"), 400, "expected strings")


# ------------------------------------------------------------------------------------------ load failures
def serve_until_exit(harness, image, model_dir):
    endpoint = harness.start_endpoint(image, model_dir, wait=False)
    try:
        status = endpoint.container.wait(timeout=120)["StatusCode"]
        return status, time.perf_counter() - endpoint.started, endpoint.logs().strip().splitlines()
    finally:
        endpoint.container.remove(force=True)


def test_a_corrupt_savedmodel_stops_serve_with_the_reason_last(harness, image, tmp_path):
    version = tmp_path / "corrupt" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"\x08\x01 this is not a protobuf \xff\xff")
    for path in (tmp_path / "corrupt", version):
        path.chmod(0o755)
    (version / "saved_model.pb").chmod(0o644)
    status, seconds, lines = serve_until_exit(harness, image, tmp_path / "corrupt")
    assert status == 3 and seconds < 30, (status, seconds, lines[-20:])
    assert "cannot serve: the model could not be loaded: ValueError: /opt/ml/model/1/saved_model.pb is not a " \
           "readable SavedModel" in lines[-1], lines[-20:]  # fmt: skip


def test_no_savedmodel_says_where_it_looked(harness, image, tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "saved_model.pb").write_bytes(b"")
    for path in (tmp_path, tmp_path / "export"):
        path.chmod(0o755)
    status, _, lines = serve_until_exit(harness, image, tmp_path)
    assert status == 3
    assert "cannot serve: the model could not be loaded: LayoutError: no SavedModel in /opt/ml/model" in lines[-1]
    assert "/opt/ml/model/export holds a SavedModel but its name is not a version number" in lines[-1], lines[-1]
