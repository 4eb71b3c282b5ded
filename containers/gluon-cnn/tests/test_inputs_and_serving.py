"""Request parsing (shapes, scales, types, refusals) and response writing, without mxnet."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from png_fixtures import bomb, declaring, encode

from byoc_runtime import request_context
from byoc_runtime.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from gluon_cnn import inputs, serving


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "shape, n", [((784,), 1), ((28, 28), 1), ((1, 28, 28), 1), ((3, 784), 3), ((3, 28, 28), 3), ((3, 1, 28, 28), 3)]
)
def test_accepted_shapes(shape, n):
    batch = inputs.parse(json.dumps({"instances": np.zeros(shape).tolist()}).encode(), "application/json")
    assert batch.images.shape == (n, 1, 28, 28) and batch.images.dtype == np.float32


def test_pixel_scale_is_detected_per_image():
    x = np.stack([np.full((28, 28), 255.0), np.full((28, 28), 0.5)])
    batch = inputs.parse(_npy(x), "application/x-npy")
    assert batch.images[0].max() == 1.0 and batch.images[1].max() == 0.5


def test_course_style_bare_array_and_data_field():
    body = json.dumps(np.zeros((1, 1, 28, 28)).tolist()).encode()
    assert inputs.parse(body, "application/json").images.shape == (1, 1, 28, 28)
    body = json.dumps({"data": np.zeros((28, 28)).tolist(), "verbose": True}).encode()
    batch = inputs.parse(body, "application/json; charset=utf-8")
    assert batch.verbose and batch.images.shape == (1, 1, 28, 28)


@pytest.mark.parametrize("content_type, kind", [("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/jpg", "JPEG")])
def test_image_requests(content_type, kind):
    batch = inputs.parse(encode(np.zeros((28, 28), np.uint8), kind), content_type)
    assert batch.images.shape == (1, 1, 28, 28) and batch.images.dtype == np.float32


REFUSED = {
    "json-3-pixels": (b'{"instances": [[1, 2, 3]]}', "application/json", BadRequest),
    "json-ragged": (b'{"instances": [[[1]], [[1, 2]]]}', "application/json", BadRequest),
    "json-empty": (b'{"instances": []}', "application/json", BadRequest),
    "npy-nan": (_npy(np.full((28, 28), np.nan)), "application/x-npy", BadRequest),
    "npy-negative": (_npy(np.full((28, 28), -1.0)), "application/x-npy", BadRequest),
    "npy-300": (_npy(np.full((28, 28), 300.0)), "application/x-npy", BadRequest),
    "png-text": (b"not an image", "image/png", BadRequest),
    "png-truncated": (encode(np.zeros((28, 28), np.uint8))[:-20], "image/png", BadRequest),
    "jpeg-truncated": (encode(np.zeros((28, 28), np.uint8), "JPEG")[:-100], "image/jpeg", BadRequest),
    "png-bomb-50000x50000": (bomb(50_000, 50_000), "image/png", PayloadTooLarge),
    "png-2049x2048": (declaring(2049, 2048), "image/png", PayloadTooLarge),
    "csv": (b"1,2", "text/csv", UnsupportedMediaType),
}


@pytest.mark.parametrize("body, content_type, error", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_refusals(body, content_type, error):
    with pytest.raises(error) as caught:
        inputs.parse(body, content_type)
    if content_type.startswith("image/"):
        assert caught.value.message.startswith(("Could not read the image: the", "The image is too large: the"))


def _prediction(verbose: bool) -> serving.Prediction:
    probabilities = np.array([[0.1, 0.9], [0.7, 0.3]])
    return serving.Prediction(probabilities, ["Sandal", "Shirt"], verbose)


def test_outputs():
    assert json.loads(serving.output_fn(_prediction(False), "application/json")) == {"predictions": [1, 0]}
    verbose = json.loads(serving.output_fn(_prediction(True), "application/json"))
    assert verbose["class_names"] == ["Sandal", "Shirt"]
    assert verbose["predictions"][0] == {"class": 1, "label": "Shirt", "probability": 0.9, "probabilities": [0.1, 0.9]}
    npy = np.load(io.BytesIO(serving.output_fn(_prediction(True), "application/x-npy")))
    assert npy.shape == (2, 2)
    assert serving.output_fn(_prediction(False), "text/csv") == b"1\n0\n"
    lines = serving.output_fn(_prediction(True), "application/jsonlines").splitlines()
    assert json.loads(lines[1])["label"] == "Sandal"


def test_verbose_from_accept_parameters_and_custom_attributes():
    body = json.dumps({"instances": np.zeros((28, 28)).tolist()}).encode()
    with request_context.headers({"Accept": "application/json; verbose=1"}):
        assert serving.input_fn(body, "application/json").verbose
    with request_context.headers({serving.CUSTOM_ATTRIBUTES: "verbose=true"}):
        assert serving.input_fn(body, "application/json").verbose
    with request_context.headers({"Accept": "application/json"}):
        assert not serving.input_fn(body, "application/json").verbose
    assert not serving.input_fn(body, "application/json").verbose  # outside a request


def test_json_lines_one_image_per_line():
    lines = "\n".join(json.dumps(np.zeros(784).tolist()) for _ in range(3)) + "\n"
    assert inputs.parse(lines.encode(), "application/jsonlines").images.shape == (3, 1, 28, 28)
