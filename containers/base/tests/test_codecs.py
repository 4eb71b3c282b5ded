import io
import json

import numpy as np
import pytest

from byoc_runtime import codecs
from byoc_runtime.errors import BadRequest, NotAcceptable, UnsupportedMediaType


def npy(array, **kwargs):
    buffer = io.BytesIO()
    np.save(buffer, array, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON; charset=utf-8",
        "text/csv",
        "application/x-npy",
        "application/jsonlines",
        "application/x-recordio-protobuf",
    ],
)
def test_supported_types(content_type):
    assert codecs.is_supported(content_type)


def test_json_round_trip_with_numpy_values():
    data = {"predictions": [{"score": np.float32(0.5)}, {"score": np.arange(2)}]}
    assert json.loads(codecs.encode(data, "application/json")) == {"predictions": [{"score": 0.5}, {"score": [0, 1]}]}
    assert codecs.decode(b'{"instances": [[1, 2]]}', "application/json") == {"instances": [[1, 2]]}


def test_csv_decodes_numeric_rows_and_rejects_ragged_or_text():
    assert codecs.decode(b"1,2\n3,4\n\n", "text/csv").tolist() == [[1, 2], [3, 4]]
    with pytest.raises(BadRequest, match="row 2 has 1 columns"):
        codecs.decode(b"1,2\n3\n", "text/csv")
    with pytest.raises(BadRequest, match="must be numbers"):
        codecs.decode(b"a,b\n", "text/csv")
    with pytest.raises(BadRequest, match="no CSV rows"):
        codecs.decode(b"\n\n", "text/csv")


def test_csv_encodes_predictions_row_by_row():
    assert codecs.encode({"predictions": [{"score": 1.5, "label": 1}, {"score": 2.0, "label": 0}]}, "text/csv") == (
        b"1.5,1\n2.0,0\n"
    )
    assert codecs.encode(np.array([1.0, 2.0]), "text/csv") == b"1.0\n2.0\n"


def test_jsonlines_round_trip_and_line_numbers_in_errors():
    assert codecs.decode(b'{"a": 1}\n\n[2]\n', "application/jsonlines") == [{"a": 1}, [2]]
    assert codecs.encode({"predictions": [{"s": 1}, {"s": 2}]}, "application/jsonlines") == b'{"s":1}\n{"s":2}\n'
    with pytest.raises(BadRequest, match="line 2"):
        codecs.decode(b'{"a": 1}\n{oops\n', "application/jsonlines")


def test_npy_round_trip():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(codecs.decode(npy(array), "application/x-npy"), array)
    assert np.array_equal(codecs.decode(codecs.encode(array, "application/x-npy"), "application/x-npy"), array)


def test_npy_never_unpickles(tmp_path):
    """An object array is how a pickle payload travels in .npy: it must be refused, not loaded."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    body = npy(np.array([Exploit()], dtype=object), allow_pickle=True)
    with pytest.raises(BadRequest):
        codecs.decode(body, "application/x-npy")
    assert not marker.exists()


def test_npy_truncated_is_bad_request():
    with pytest.raises(BadRequest):
        codecs.decode(npy(np.zeros((100, 100)))[:200], "application/x-npy")


def test_unknown_types():
    with pytest.raises(UnsupportedMediaType):
        codecs.decode(b"x", "application/xml")
    with pytest.raises(UnsupportedMediaType):
        codecs.decode(b"x", None)
    with pytest.raises(NotAcceptable):
        codecs.encode([1], "image/png")


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
        ("image/png, text/csv;q=0.5", "text/csv"),
        ("text/csv;q=0.2, application/jsonlines", "application/jsonlines"),
        ("application/*", "application/json"),
    ],
)
def test_negotiate(accept, expected):
    assert codecs.negotiate(accept) == expected


def test_negotiate_refuses_what_is_not_offered():
    with pytest.raises(NotAcceptable):
        codecs.negotiate("text/csv", ["application/json"])


def test_envelopes():
    assert codecs.instances_of({"instances": [1]}) == [1]
    assert codecs.instances_of({"inputs": {"a": [1]}}) == {"a": [1]}
    assert codecs.instances_of([1]) == [1]
    assert codecs.predictions_of({"predictions": [2]}) == [2]


def test_npy_headers_are_parsed_once_and_still_checked_every_time():
    from byoc_runtime.codecs import npy_codec

    npy_codec._read_header_bytes.cache_clear()
    images = [np.random.default_rng(n).random((28, 28), dtype=np.float32) for n in range(3)]
    for image in images:  # one header, three bodies
        assert np.array_equal(codecs.decode(npy(image), "application/x-npy"), image)
    assert npy_codec._read_header_bytes.cache_info().misses == 1
    as_bytearray = bytearray(npy(images[0]))  # how sagemaker-inference hands a body to a handler
    assert np.array_equal(codecs.decode(as_bytearray, "application/x-npy"), images[0])
    short = npy(images[0])[:-4]  # the cached header, with fewer bytes than it declares
    with pytest.raises(BadRequest, match="declares shape"):
        codecs.decode(short, "application/x-npy")
    version_2 = npy(images[1])  # the same array as format 2.0: its own header
    body = io.BytesIO()
    np.lib.format.write_array(body, images[1], version=(2, 0))
    assert np.array_equal(codecs.decode(body.getvalue(), "application/x-npy"), images[1])
    assert npy_codec._read_header_bytes.cache_info().misses == 2
    assert version_2 != body.getvalue()


@pytest.fixture(params=["orjson", "stdlib"])
def json_engine(request, monkeypatch):
    """Every JSON behaviour holds with orjson doing the work and without it (a user's image may lack it)."""
    from byoc_runtime.codecs import json_codec

    if request.param == "stdlib":
        monkeypatch.setattr(json_codec, "orjson", None)
    else:
        assert json_codec.orjson is not None, "orjson is a dependency of the runtime"
    return request.param


@pytest.mark.parametrize(
    "body, message",
    [
        (b"[NaN]", "not a number JSON allows"),
        (b'{"x": Infinity}', "not a number JSON allows"),
        (b"[1e999]", "too large"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'{"a": 1', ""),
        (b"\xff\xfe", ""),
    ],
)
def test_json_refusals_are_the_same_with_either_engine(json_engine, body, message):
    with pytest.raises(BadRequest, match=message):
        codecs.decode(body, "application/json")


def test_float32_values_stay_with_orjson_and_long_integers_go_to_the_stdlib(monkeypatch):
    """float32 values print with long fractions (0.0007999999797903001: 19 digits after the point); both
    engines read them as the same float, so orjson keeps them (an image of them read by the stdlib cost 7x).
    An integer of 19+ digits, wherever it stands, still goes to the stdlib, which reads it exactly."""
    from byoc_runtime.codecs import json_codec

    rng = np.random.default_rng(0)
    pixels = (rng.random((28, 28)) ** 4).astype(np.float32)  # many small values: long runs of digits
    body = json.dumps({"instances": [pixels.tolist()]}).encode()
    assert b"0" * 19 in body.translate(bytes.maketrans(b"123456789", b"000000000"))  # what used to send it away
    stdlib_reads = []
    real_loads = json.loads
    monkeypatch.setattr(json_codec.json, "loads", lambda *a, **k: stdlib_reads.append(1) or real_loads(*a, **k))
    assert codecs.decode(body, "application/json") == real_loads(body)
    assert not stdlib_reads
    for long_integer in (b"12345678901234567890", b"[-12345678901234567890]", b'{"id":12345678901234567890}',
                         b"[0.5,12345678901234567890]", b"[1e1234567890123456789]"):  # fmt: skip
        stdlib_reads.clear()
        try:
            value = codecs.decode(long_integer, "application/json")
        except BadRequest:  # the exponent: too large, refused as the stdlib refuses it
            value = None
        assert stdlib_reads, long_integer
        if value is not None:
            assert value == real_loads(long_integer)


def test_json_values_are_the_same_with_either_engine(json_engine):
    body = b'{"instances": [{"in0": [196], "in1": [242]}], "big": 123456789012345678901234567890, "s": "\\u00e9"}'
    assert codecs.decode(body, "application/json") == json.loads(body)
    assert type(codecs.decode(body, "application/json")["big"]) is int  # not a float, as orjson would read it
    answer = {"predictions": [{"scores": [np.float32(2.5)], "rating": np.float64(1e-5)}], "none": None,
              "array": np.arange(3, dtype=np.int64), "big": 2**70, "keys": {1: "one"}}  # fmt: skip
    assert json.loads(codecs.encode(answer, "application/json")) == json.loads(
        json.dumps(answer, default=lambda v: v.tolist() if hasattr(v, "tolist") else v.item())
    )
    with pytest.raises(BadRequest, match="NaN or infinite"):  # refused, not written as null (orjson)
        codecs.encode({"predictions": [float("nan")]}, "application/json")
    with pytest.raises(BadRequest, match="NaN or infinite"):
        codecs.encode({"predictions": np.array([1.0, np.inf])}, "application/json")
    titled = {"title": "Café", "genres": ["Comédie"]}
    assert codecs.encode(titled, "application/json") == json.dumps(titled, separators=(",", ":")).encode()
    import dataclasses

    @dataclasses.dataclass
    class Opaque:
        x: int = 1

    with pytest.raises(Exception, match="not JSON serializable"):  # refused as before, not written as {"x": 1}
        codecs.encode({"predictions": [Opaque()]}, "application/json")
