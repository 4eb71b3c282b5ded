"""recordIO-protobuf codec: round trips, byte identity with the sagemaker SDK (v2), hostile input."""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from google.protobuf import descriptor_pb2

from byoc_runtime.codecs import recordio_protobuf as rp

MAGIC = struct.pack("<I", 0xCED7230A)


@pytest.fixture(scope="module")
def sdk():
    """sagemaker.amazon.common from SDK v2; the tests that compare bytes skip without it."""
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    return pytest.importorskip("sagemaker.amazon.common")


def sdk_bytes(writer, *args) -> bytes:
    buffer = io.BytesIO()
    writer(buffer, *args)
    return buffer.getvalue()


def framed(payload: bytes, flag: int = 0) -> bytes:
    return MAGIC + struct.pack("<I", (flag << 29) | len(payload)) + payload + b"\0" * (-len(payload) % 4)


def sparse_record(keys: list[int], values: list[float], num_cols: int) -> bytes:
    record = rp.Record()
    tensor = record.features["values"].float32_tensor
    tensor.values.extend(values)
    tensor.keys.extend(keys)
    tensor.shape.append(num_cols)
    return framed(record.SerializeToString())


# ------------------------------------------------------------------------------------------ round trips


def test_dense_float32_round_trip_with_labels():
    features = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    labels = np.array([0.5, 1.5, 2.5, 3.5], dtype=np.float32)
    decoded = rp.decode(rp.write_dense(features, labels))
    assert not decoded.is_sparse and decoded.sparse is None
    assert decoded.features.dtype == np.float32
    np.testing.assert_array_equal(decoded.features, features)
    np.testing.assert_array_equal(decoded.labels, labels)


def test_dense_float64_and_int_labels_round_trip():
    features = np.linspace(-1, 1, 10).reshape(5, 2)  # float64: written as Float64Tensor
    labels = np.array([0, 1, 1, 0, 2])  # int64: written as Int32Tensor
    record = next(rp.read_records(rp.write_dense(features, labels)))
    assert record.features["values"].WhichOneof("value") == "float64_tensor"
    assert record.label["values"].WhichOneof("value") == "int32_tensor"
    decoded = rp.decode(rp.write_dense(features, labels))
    np.testing.assert_allclose(decoded.features, features.astype(np.float32))
    assert decoded.labels.dtype == np.int32
    np.testing.assert_array_equal(decoded.labels, labels)


def test_dense_int_features_and_no_labels():
    features = np.array([[1, -2], [3, 2**31 - 1]])
    decoded = rp.decode(rp.write_dense(features))
    np.testing.assert_array_equal(decoded.features, features.astype(np.float32))
    assert decoded.labels is None


def test_write_dense_to_file_and_read_from_file():
    features = np.eye(3, dtype=np.float32)
    buffer = io.BytesIO()
    rp.write_dense_to(buffer, features)
    assert buffer.getvalue() == rp.write_dense(features)
    buffer.seek(0)
    records = list(rp.read_records(buffer))
    assert [list(r.features["values"].float32_tensor.values) for r in records] == features.tolist()


def test_sparse_round_trip_from_csr_tuple_and_rows():
    indptr, indices, values = np.array([0, 2, 2, 3]), np.array([1, 4, 0]), np.array([1.5, -2, 3], np.float32)
    from_tuple = rp.write_sparse((indptr, indices, values, 6), labels=np.array([1.0, 0.0, 1.0], np.float32))
    rows = [([1, 4], np.array([1.5, -2], np.float32)), ([], []), ([0], np.array([3], np.float32))]
    from_rows = rp.write_sparse(rows, labels=np.array([1.0, 0.0, 1.0], np.float32), num_cols=6)
    assert from_rows == from_tuple  # the empty row does not turn the tensor into float64

    decoded = rp.decode(from_tuple)
    assert decoded.is_sparse
    expected = np.zeros((3, 6), np.float32)
    expected[0, 1], expected[0, 4], expected[2, 0] = 1.5, -2, 3
    np.testing.assert_array_equal(decoded.features, expected)
    np.testing.assert_array_equal(decoded.labels, [1, 0, 1])
    np.testing.assert_array_equal(decoded.sparse.indptr, indptr)
    np.testing.assert_array_equal(decoded.sparse.indices, indices)
    np.testing.assert_array_equal(decoded.sparse.values, values)
    assert decoded.sparse.num_cols == 6


def test_sparse_round_trip_from_scipy():
    sparse = pytest.importorskip("scipy.sparse")
    matrix = sparse.random(8, 30, density=0.1, format="csr", random_state=3, dtype=np.float32)
    decoded = rp.decode(rp.write_sparse(matrix))
    np.testing.assert_array_equal(decoded.features, matrix.toarray())


@pytest.mark.parametrize(
    ("indptr", "indices", "values"),
    [
        ([0, 2], [0, 9], [1.0, 2.0]),  # a column index beyond num_cols
        ([0, 3], [0, 1], [1.0, 2.0]),  # indptr runs past the indices
        ([0, 1], [0.5], [1.0]),  # float indices
    ],
)
def test_write_sparse_rejects_inconsistent_input(indptr, indices, values):
    with pytest.raises(ValueError):
        rp.write_sparse((np.array(indptr), np.array(indices), np.array(values, np.float32), 5))


def test_write_rejects_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match="2-D"):
        rp.write_dense(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="Labels"):
        rp.write_dense(np.zeros((3, 2), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="Unsupported dtype"):
        rp.write_dense(np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="int32"):
        rp.write_dense(np.array([[2**40]]))


# ------------------------------------------------------------------------------- the SDK's exact bytes


def test_descriptor_matches_the_sdk_record_proto(sdk):
    from sagemaker.amazon import record_pb2

    theirs = descriptor_pb2.FileDescriptorProto.FromString(record_pb2.DESCRIPTOR.serialized_pb)
    ours = descriptor_pb2.FileDescriptorProto.FromString(rp.Record.DESCRIPTOR.file.serialized_pb)
    assert (ours.package, ours.syntax, ours.options) == (theirs.package, theirs.syntax, theirs.options)
    assert list(ours.message_type) == list(theirs.message_type)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("label_dtype", [None, np.float32, np.float64, np.int64])
def test_dense_bytes_identical_to_sdk(sdk, dtype, label_dtype):
    rng = np.random.default_rng(7)
    features = (rng.normal(size=(6, 5)) * 100).astype(dtype)
    labels = None if label_dtype is None else rng.integers(0, 5, 6).astype(label_dtype)
    assert rp.write_dense(features, labels) == sdk_bytes(sdk.write_numpy_to_dense_tensor, features, labels)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_labels", [False, True])
def test_sparse_bytes_identical_to_sdk(sdk, dtype, with_labels):
    sparse = pytest.importorskip("scipy.sparse")
    matrix = sparse.random(7, 40, density=0.15, format="csr", random_state=11, dtype=dtype)
    matrix = sparse.vstack([matrix, sparse.csr_matrix((1, 40), dtype=dtype)]).tocsr()  # an empty row too
    labels = np.arange(8, dtype=np.float32) if with_labels else None
    ours = rp.write_sparse(matrix, labels)
    assert ours == sdk_bytes(sdk.write_spmatrix_to_sparse_tensor, matrix, labels)
    csr = matrix.tocsr()
    assert rp.write_sparse((csr.indptr, csr.indices, csr.data, 40), labels) == ours


def test_reads_what_the_sdk_wrote_and_the_sdk_reads_ours(sdk):
    features = np.arange(6, dtype=np.float32).reshape(3, 2)
    labels = np.array([1.0, 2.0, 3.0], np.float32)
    decoded = rp.decode(sdk_bytes(sdk.write_numpy_to_dense_tensor, features, labels))
    np.testing.assert_array_equal(decoded.features, features)
    np.testing.assert_array_equal(decoded.labels, labels)

    sdk_records = sdk.read_records(io.BytesIO(rp.write_dense(features, labels)))
    assert [list(r.features["values"].float32_tensor.values) for r in sdk_records] == features.tolist()
    assert [r.label["values"].float32_tensor.values[0] for r in sdk_records] == labels.tolist()


# ------------------------------------------------------------------------------------- framing details


def test_framing_is_magic_length_payload_padding():
    data = rp.write_dense(np.array([[1.0]], np.float32))
    magic, length = struct.unpack("<II", data[:8])
    assert magic == 0xCED7230A and length >> 29 == 0
    assert len(data) == 8 + length + (-length % 4) and len(data) % 4 == 0


def test_multipart_records_are_joined_with_the_magic_word():
    # dmlc's writer splits a record wherever its payload holds the magic word and drops that word.
    record = rp.Record()
    record.features["values"].bytes.value.append(b"head" + MAGIC + b"middle" + MAGIC + b"tail")
    payload = record.SerializeToString()
    first, middle, last = payload.split(MAGIC)
    data = framed(first, flag=1) + framed(middle, flag=2) + framed(last, flag=3) + framed(payload)
    assert [r.SerializeToString() for r in rp.read_records(data)] == [payload, payload]


# ---------------------------------------------------------------------------------------- hostile input


def test_truncated_data_raises_value_error_at_every_cut():
    data = rp.write_dense(np.arange(8, dtype=np.float32).reshape(2, 4), np.array([1.0, 2.0], np.float32))
    for cut in range(1, len(data)):
        if cut == len(data) // 2:  # a clean record boundary
            continue
        with pytest.raises(ValueError, match="Truncated|magic|protobuf"):
            list(rp.read_records(data[:cut]))


@pytest.mark.parametrize(
    "data",
    [
        b"not recordio at all",
        b"\0" * 16,
        MAGIC + struct.pack("<I", (1 << 29) - 1),  # claims a 512 MiB record, has nothing
        MAGIC + struct.pack("<I", (1 << 29) - 1) + b"\0" * 64,
        framed(b"\xff\xff\xff\xff\xff\xff"),  # not a protobuf message
        framed(b"", flag=2),  # a continuation without a start
        framed(b"", flag=5),
    ],
)
def test_garbage_raises_value_error(data):
    with pytest.raises(ValueError):
        rp.decode(data)


def test_crafted_sparse_shape_is_refused_but_readable_as_csr():
    data = sparse_record([3], [1.0], 10**9) + sparse_record([], [], 10**9)
    with pytest.raises(ValueError, match="dense matrix"):
        rp.decode(data)
    decoded = rp.decode(data, densify=False)
    assert decoded.features is None and decoded.is_sparse
    assert decoded.sparse.num_cols == 10**9
    np.testing.assert_array_equal(decoded.sparse.indptr, [0, 1, 1])


def test_dense_size_limit_is_configurable():
    data = rp.write_dense(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="limit 10"):
        rp.decode(data, max_dense_values=10)


def test_sparse_key_beyond_shape_is_refused():
    with pytest.raises(ValueError, match="keys"):
        rp.decode(sparse_record([7], [1.0], 5))


def test_mixed_dense_and_sparse_is_refused():
    data = rp.write_dense(np.ones((1, 4), np.float32)) + sparse_record([1], [2.0], 4)
    with pytest.raises(ValueError, match="mix dense and sparse"):
        rp.decode(data)


def test_inconsistent_widths_are_refused():
    data = rp.write_dense(np.ones((1, 4), np.float32)) + rp.write_dense(np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match="inconsistent feature widths"):
        rp.decode(data)
    with pytest.raises(ValueError, match="inconsistent feature widths"):
        rp.decode(sparse_record([1], [2.0], 4) + sparse_record([1], [2.0], 5))


def test_partial_labels_and_non_numeric_features_are_refused():
    labelled = rp.write_dense(np.ones((1, 2), np.float32), np.ones(1, np.float32))
    with pytest.raises(ValueError, match="label"):
        rp.decode(labelled + rp.write_dense(np.ones((1, 2), np.float32)))
    record = rp.Record()
    record.features["values"].bytes.value.append(b"raw")
    with pytest.raises(ValueError, match="only numeric tensors"):
        rp.decode(framed(record.SerializeToString()))
    with pytest.raises(ValueError, match="no 'values' feature"):
        rp.decode(framed(rp.Record(uid="x").SerializeToString()))


def test_empty_body_decodes_to_no_rows():
    decoded = rp.decode(b"")
    assert decoded.features.shape == (0, 0) and decoded.labels is None


# ------------------------------------------------------------------------------------------ responses


def test_encode_predictions_is_decodable():
    data = rp.encode_predictions([{"score": 0.25, "predicted_label": 1.0}, {"score": [0.1, 0.9]}])
    records = list(rp.read_records(data))
    assert len(records) == 2
    assert records[0].label["score"].float32_tensor.values[0] == pytest.approx(0.25)
    assert list(records[0].label["predicted_label"].float32_tensor.values) == [1.0]
    assert list(records[1].label["score"].float32_tensor.values) == pytest.approx([0.1, 0.9])
    assert not records[0].features


def test_encode_predictions_readable_by_sdk(sdk):
    data = rp.encode_predictions([{"score": 0.5}])
    (record,) = sdk.read_records(io.BytesIO(data))
    assert list(record.label["score"].float32_tensor.values) == [0.5]


def test_registry_encode_wraps_bare_values_as_score():
    data = rp.encode({"predictions": [0.5, {"score": 1.0, "predicted_label": 1}]})
    records = list(rp.read_records(data))
    assert list(records[0].label["score"].float32_tensor.values) == [0.5]
    assert list(records[1].label["predicted_label"].float32_tensor.values) == [1.0]
    assert len(list(rp.read_records(rp.encode(np.array([[1.0, 2.0], [3.0, 4.0]]))))) == 2
