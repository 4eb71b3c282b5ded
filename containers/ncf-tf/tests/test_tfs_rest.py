"""TensorFlow Serving's REST semantics and layout without TensorFlow: custom attributes, row and columnar
requests against a signature, dtypes, answers' shapes, tf.Example features, and where models are found."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from byoc_runtime.errors import BadRequest
from ncf_tf import layout, tfs_rest
from ncf_tf.tfs_rest import Signature, Target, TensorSig

F32, I32 = np.dtype(np.float32), np.dtype(np.int32)
TWO_INPUTS = Signature(
    "serving_default",
    "tensorflow/serving/predict",
    {"a": TensorSig(F32, "float", (None, 3)), "b": TensorSig(I32, "int", (None,))},
    {"score": TensorSig(F32, "float", (None, 1))},
)
ONE_INPUT = Signature("one", "tensorflow/serving/predict", {"x": TensorSig(F32, "float", (None, 2))}, {})
TEXT = Signature("text", "tensorflow/serving/predict", {"t": TensorSig(np.dtype(object), "string", (None,))}, {})


@pytest.mark.parametrize(
    "header, target",
    [
        (None, Target()),
        ("", Target()),
        ("tfs-model-name=ncf,tfs-model-version=000000002", Target("ncf", 2)),
        ("tfs-method=classify,tfs-model-name=m", Target("m", None, "classify")),
        ("trace=abc,tfs-method=REGRESS", Target(None, None, "regress")),  # other attributes are someone else's
    ],
)
def test_custom_attributes(header, target):
    assert tfs_rest.parse_custom_attributes(header) == target


@pytest.mark.parametrize("header", ["tfs-method=explain", "tfs-model-version=latest", "tfs-model-version=-1"])
def test_bad_custom_attributes_are_400(header):
    with pytest.raises(BadRequest):
        tfs_rest.parse_custom_attributes(header)


@pytest.mark.parametrize(
    "data, kind, wrapped",
    [
        ({"instances": [1]}, "application/json", {"instances": [1]}),
        ({"inputs": {"a": 1}}, "application/json", {"inputs": {"a": 1}}),
        ({"examples": []}, "application/json", {"examples": []}),
        ({"a": [1, 2, 3], "b": 1}, "application/json", {"instances": [{"a": [1, 2, 3], "b": 1}]}),  # one instance
        ([[1, 2], [3, 4]], "application/json", {"instances": [[1, 2], [3, 4]]}),
        ([1, 2], "application/json", {"instances": [[1, 2]]}),  # as the container: a flat list is one instance
        (5, "application/json", {"instances": [5]}),
        ([{"a": 1}, {"a": 2}], "application/jsonlines", {"instances": [{"a": 1}, {"a": 2}]}),
    ],
)
def test_bodies_become_tf_serving_requests(data, kind, wrapped):
    assert tfs_rest.as_tfs_request(data, kind) == wrapped


def test_csv_rows_are_instances_and_one_column_rows_scalars():
    table = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert tfs_rest.as_tfs_request(table, "text/csv")["instances"].shape == (2, 2)
    assert tfs_rest.as_tfs_request(table[:, :1], "text/csv")["instances"].shape == (2,)


def test_row_format_with_objects_and_columnar_give_the_same_tensors():
    rows = tfs_rest.predict_request({"instances": [{"a": [1, 2, 3], "b": 4}, {"a": [0, 0, 1], "b": 0}]}, TWO_INPUTS)
    cols = tfs_rest.predict_request({"inputs": {"a": [[1, 2, 3], [0, 0, 1]], "b": [4, 0]}}, TWO_INPUTS)
    assert rows.row_format and not cols.row_format
    for name in ("a", "b"):
        assert rows.tensors[name].dtype == TWO_INPUTS.inputs[name].dtype
        np.testing.assert_array_equal(rows.tensors[name], cols.tensors[name])
    assert rows.tensors["a"].shape == (2, 3) and rows.tensors["b"].tolist() == [4, 0]


def test_one_input_takes_bare_values():
    assert tfs_rest.predict_request({"instances": [[1, 2], [3, 4.5]]}, ONE_INPUT).tensors["x"].shape == (2, 2)
    assert tfs_rest.predict_request({"inputs": [[1, 2]]}, ONE_INPUT).tensors["x"].tolist() == [[1, 2]]
    assert tfs_rest.predict_request({"instances": [{"x": [1, 2]}]}, ONE_INPUT).tensors["x"].shape == (1, 2)


@pytest.mark.parametrize(
    "data, signature, message",
    [
        ({"instances": [[1, 2, 3]]}, TWO_INPUTS, "expecting list of objects"),
        ({"instances": [{"a": [1, 2, 3]}]}, TWO_INPUTS, "keys must be equal to: a,b (missing: b)"),
        ({"instances": [{"a": [1, 2, 3], "b": 1, "c": 2}]}, TWO_INPUTS, "not inputs of signature"),
        ({"instances": [{"a": [1, 2, 3], "b": 1}, [1, 2, 3]]}, TWO_INPUTS, "Expecting object but got list at item 1"),
        ({"instances": []}, TWO_INPUTS, "No values"),
        ({"instances": {"a": 1}}, TWO_INPUTS, "to be a list"),
        ({"instances": [1], "inputs": [1]}, ONE_INPUT, "not both"),
        ({"nothing": 1}, ONE_INPUT, "Missing 'inputs' or 'instances' key"),
        ({"inputs": [1, 2]}, TWO_INPUTS, "expecting an object"),
        ({"inputs": {"a": [[1, 2, 3]]}}, TWO_INPUTS, "Missing named input: b"),
        ({"instances": [{"a": [1, 2], "b": 1}]}, TWO_INPUTS, "has shape [1, 2] but signature 'serving_default' takes"),
        ({"instances": [{"a": [1, 2, 3], "b": 1.5}]}, TWO_INPUTS, "expected integers"),
        ({"instances": [{"a": [1, 2, 3], "b": 2**40}]}, TWO_INPUTS, "outside the range of int32"),
        ({"instances": [{"a": [1, 2, "x"], "b": 1}]}, TWO_INPUTS, "expected float values"),
        ({"instances": [{"a": [True, False, True], "b": 1}]}, TWO_INPUTS, "got true/false"),
        ({"instances": [{"a": [1, 2, 1e39], "b": 1}]}, TWO_INPUTS, "outside the range of float32"),
        ({"instances": [[1, 2], [1, 2, 3]]}, ONE_INPUT, "unequal lengths"),
        ({"instances": [1, 2]}, TEXT, "expected strings"),
        ({"instances": [{"b64": "%%%"}]}, TEXT, "is not base64"),
        ({"instances": ["a", ["b"]]}, TEXT, "unequal lengths"),
    ],
)
def test_bad_predict_requests_say_what_is_wrong(data, signature, message):
    with pytest.raises(BadRequest) as caught:
        tfs_rest.predict_request(data, signature)
    assert message in caught.value.message


def test_strings_as_text_and_b64():
    request = tfs_rest.predict_request({"instances": ["abc", {"b64": base64.b64encode(b"\xff").decode()}]}, TEXT)
    assert request.tensors["t"].tolist() == [b"abc", b"\xff"]


def test_signature_name():
    assert tfs_rest.signature_name_of({"instances": []}) == "serving_default"
    assert tfs_rest.signature_name_of({"signature_name": "total"}) == "total"
    with pytest.raises(BadRequest):
        tfs_rest.signature_name_of({"signature_name": 3})


def test_answers_have_tf_servings_shapes():
    score = np.array([[0.78], [0.1]], np.float32)
    logits = np.array([[1, 2], [3, 4]], np.float32)
    assert tfs_rest.predict_answer({"score": score}, True) == {"predictions": [[0.78], [0.1]]}  # shortest float32
    assert tfs_rest.predict_answer({"score": score}, False) == {"outputs": [[0.78], [0.1]]}
    assert tfs_rest.predict_answer({"score": score, "logits": logits}, True) == {
        "predictions": [{"logits": [1.0, 2.0], "score": [0.78]}, {"logits": [3.0, 4.0], "score": [0.1]}]
    }
    assert tfs_rest.predict_answer({"score": score, "logits": logits}, False) == {
        "outputs": {"logits": [[1.0, 2.0], [3.0, 4.0]], "score": [[0.78], [0.1]]}
    }
    text = np.array([b"ok", b"\xff"], dtype=object)
    assert tfs_rest.predict_answer({"t": text}, True) == {"predictions": ["ok", {"b64": "/w=="}]}
    assert tfs_rest.predict_answer({"t_bytes": text[:1]}, True) == {"predictions": [{"b64": "b2s="}]}
    with pytest.raises(BadRequest, match="inconsistent batch size"):
        tfs_rest.predict_answer({"a": np.zeros(2), "b": np.zeros(3)}, True)
    with pytest.raises(BadRequest, match="no shape information"):
        tfs_rest.predict_answer({"a": np.float32(1)}, True)
    assert tfs_rest.predict_answer({"a": np.float32(1)}, False) == {"outputs": 1.0}


def test_classify_and_regress_answers():
    classes = np.array([[b"yes", b"no"]], dtype=object)
    scores = np.array([[0.25, 0.75]], np.float32)
    assert tfs_rest.classify_answer(classes, scores) == {"results": [[["yes", 0.25], ["no", 0.75]]]}
    assert tfs_rest.classify_answer(None, scores) == {"results": [[["", 0.25], ["", 0.75]]]}
    assert tfs_rest.regress_answer(np.array([[1.5], [2.0]], np.float32)) == {"results": [1.5, 2.0]}


def test_examples_merge_the_context_and_type_the_features():
    request = tfs_rest.examples_request(
        {"context": {"k": 3, "tag": "a"}, "examples": [{"x": [1.0, 0.5]}, {"x": [0.25, 2.0], "k": 1}]}, "classify"
    )
    assert request.examples == [{"k": [3], "tag": ["a"], "x": [1.0, 0.5]}, {"k": [1], "tag": ["a"], "x": [0.25, 2.0]}]
    assert [tfs_rest.feature_kind(v) for v in (1, True, 1.5, "s", {"b64": "YQ=="})] == [
        "int64", "int64", "float", "bytes", "bytes",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "data, message",
    [
        ({"instances": [1]}, "key 'examples' is expected"),
        ({"examples": []}, "empty array"),
        ({"examples": {"x": 1}}, "list/array"),
        ({"examples": [1]}, "Example must be JSON object"),
        ({"examples": [{"x": [1, 2.5]}]}, "Unexpected element type in feature: x"),
        ({"examples": [{"x": None}]}, "unexpected JSON type"),
        ({"examples": [{"x": [[1]]}]}, "unexpected JSON type"),
        ({"examples": [{"x": 1}], "context": [1]}, "'context' must be an object"),
    ],
)
def test_bad_examples(data, message):
    with pytest.raises(BadRequest) as caught:
        tfs_rest.examples_request(data, "classify")
    assert message in caught.value.message


# ------------------------------------------------------------------------------------------ layout
def _saved_model(directory):
    directory.mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"")


def test_one_model_at_the_top_is_named_model_and_newest_is_the_largest_version(tmp_path):
    for version in ("000000001", "000000010", "2"):
        _saved_model(tmp_path / version)
    (tmp_path / "ncf").mkdir()  # our trainer's extras: not a model
    (tmp_path / "notes").mkdir()
    (models,) = [layout.discover(tmp_path)]
    assert [m.name for m in models] == ["model"]
    assert sorted(models[0].versions) == [1, 2, 10] and models[0].newest == 10


def test_models_by_name_at_any_depth(tmp_path):
    _saved_model(tmp_path / "b" / "1")
    _saved_model(tmp_path / "a" / "3")
    _saved_model(tmp_path / "export" / "Servo" / "1700000000")
    models = layout.discover(tmp_path)
    assert [(m.name, sorted(m.versions)) for m in models] == [("Servo", [1700000000]), ("a", [3]), ("b", [1])]
    assert layout.default_name([m.name for m in models], None) == "Servo"
    assert layout.default_name([m.name for m in models], "b") == "b"
    with pytest.raises(layout.LayoutError, match="SAGEMAKER_TFS_DEFAULT_MODEL_NAME='c' names no model"):
        layout.default_name([m.name for m in models], "c")


def test_a_versions_own_folders_are_not_searched(tmp_path):
    _saved_model(tmp_path / "1")
    _saved_model(tmp_path / "1" / "assets" / "2")  # nonsense inside a version: not a second model
    assert [m.name for m in layout.discover(tmp_path)] == ["model"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "holds: nothing"),
        (lambda p: (p / "saved_model.pb").write_bytes(b""), "put the SavedModel in a version directory"),
        (lambda p: _saved_model(p / "export"), "its name is not a version number"),
        (lambda p: (p / "model.keras").write_bytes(b""), "is a Keras file, not a SavedModel"),
        (lambda p: (_saved_model(p / "a" / "1"), _saved_model(p / "x" / "a" / "1")), "two models are named 'a'"),
        (lambda p: (_saved_model(p / "1"), _saved_model(p / "01")), "are both version 1"),
    ],
)
def test_layout_problems_say_how_to_fix_them(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(layout.LayoutError) as caught:
        layout.discover(tmp_path)
    assert message in str(caught.value)
