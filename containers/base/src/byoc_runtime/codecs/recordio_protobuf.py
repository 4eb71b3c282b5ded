"""SageMaker recordIO-protobuf ("application/x-recordio-protobuf"): the `aialgs.data.Record` codec.

The message classes are built at import time from a descriptor written in code, so the image needs
neither the sagemaker SDK nor protoc output. Field numbers match the SDK's `record.proto`, and the
writers make the same calls as `write_numpy_to_dense_tensor` / `write_spmatrix_to_sparse_tensor`,
so the bytes are identical to what the SDK produces.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

CONTENT_TYPE = "application/x-recordio-protobuf"

RECORDIO_MAGIC = 0xCED7230A
_HEADER = struct.Struct("<II")
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_LENGTH_MASK = (1 << 29) - 1  # the upper 3 bits of the length word are the continuation flag
_READ_CHUNK = 1 << 20  # read long payloads piecewise so a forged length cannot allocate up front
MAX_DENSE_VALUES = 50_000_000  # refuse to materialise more floats than this (200 MB of float32)
_INT32 = np.iinfo(np.int32)


def _build_record_file() -> descriptor_pb2.FileDescriptorProto:
    """The SDK's record.proto (proto2, package aialgs.data) as a descriptor, field for field."""
    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="byoc_runtime/aialgs_record.proto", package="aialgs.data")
    proto.options.java_package = "com.amazonaws.aialgorithms.proto"
    proto.options.java_outer_classname = "RecordProtos"

    def add(message: Any, name: str, number: int, kind: int, repeated: bool = False, **extra: Any) -> Any:
        label = f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL
        return message.field.add(name=name, number=number, type=kind, label=label, **extra)

    tensor_value_kinds = {
        "Float32Tensor": f.TYPE_FLOAT,
        "Float64Tensor": f.TYPE_DOUBLE,
        "Int32Tensor": f.TYPE_INT32,
    }
    for name, value_kind in tensor_value_kinds.items():
        tensor = proto.message_type.add(name=name)
        for number, (field, kind) in enumerate(
            (("values", value_kind), ("keys", f.TYPE_UINT64), ("shape", f.TYPE_UINT64)), 1
        ):
            add(tensor, field, number, kind, repeated=True).options.packed = True

    raw = proto.message_type.add(name="Bytes")
    add(raw, "value", 1, f.TYPE_BYTES, repeated=True)
    add(raw, "content_type", 2, f.TYPE_STRING)

    value = proto.message_type.add(name="Value")
    value.oneof_decl.add(name="value")
    for name, number, message in (
        ("float32_tensor", 2, "Float32Tensor"),
        ("float64_tensor", 3, "Float64Tensor"),
        ("int32_tensor", 7, "Int32Tensor"),
        ("bytes", 9, "Bytes"),
    ):
        add(value, name, number, f.TYPE_MESSAGE, type_name=f".aialgs.data.{message}", oneof_index=0)

    record = proto.message_type.add(name="Record")
    for name, number in (("features", 1), ("label", 2)):  # map<string, Value> is a repeated map_entry message
        entry = f"{name.title()}Entry"
        add(record, name, number, f.TYPE_MESSAGE, repeated=True, type_name=f".aialgs.data.Record.{entry}")
        entry_type = record.nested_type.add(name=entry)
        entry_type.options.map_entry = True
        add(entry_type, "key", 1, f.TYPE_STRING)
        add(entry_type, "value", 2, f.TYPE_MESSAGE, type_name=".aialgs.data.Value")
    for name, number in (("uid", 3), ("metadata", 4), ("configuration", 5)):
        add(record, name, number, f.TYPE_STRING)
    return proto


def _message_classes() -> dict[str, Any]:
    # A private pool: the default one may already hold the SDK's record.proto with the same names.
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(_build_record_file().SerializeToString())
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get_class is None:
        get_class = message_factory.MessageFactory(pool).GetPrototype
    names = ("Float32Tensor", "Float64Tensor", "Int32Tensor", "Bytes", "Value", "Record")
    return {name: get_class(pool.FindMessageTypeByName(f"aialgs.data.{name}")) for name in names}


_CLASSES = _message_classes()
Record, Value = _CLASSES["Record"], _CLASSES["Value"]


class CsrMatrix(NamedTuple):
    """A sparse matrix without scipy: row i holds `indices/values[indptr[i]:indptr[i + 1]]`."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    num_cols: int


@dataclass(frozen=True)
class DecodedRecords:
    """A request decoded to arrays; `features` is None only for sparse input decoded with densify=False."""

    features: np.ndarray | None
    labels: np.ndarray | None
    is_sparse: bool
    sparse: CsrMatrix | None = None


# ---------------------------------------------------------------------------------------------- writing


def _tensor_field(dtype: np.dtype) -> str:
    """The Value oneof member the SDK picks for a dtype (its Int32 also takes int64, range-checked here)."""
    if dtype == np.float32:
        return "float32_tensor"
    if dtype == np.float64:
        return "float64_tensor"
    if dtype.kind in "iu":
        return "int32_tensor"
    raise ValueError(f"Unsupported dtype {dtype}: use float32, float64 or an integer type")


def _checked(array: np.ndarray, what: str) -> np.ndarray:
    """`array` itself, once its dtype maps to a tensor type and integers fit Int32Tensor."""
    _tensor_field(array.dtype)
    if array.dtype.kind in "iu" and array.size and not _INT32.min <= array.min() <= array.max() <= _INT32.max:
        raise ValueError(f"{what} hold integers outside the int32 range of Int32Tensor")
    return array


def _checked_labels(labels: Any, num_rows: int) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != num_rows:
        raise ValueError(f"Labels must be a vector of {num_rows} values, got shape {labels.shape}")
    return _checked(labels, "Labels")


def _frame(payload: bytes) -> bytes:
    if len(payload) > _LENGTH_MASK:
        raise ValueError(f"A record of {len(payload)} bytes exceeds the recordIO limit of {_LENGTH_MASK}")
    return _HEADER.pack(RECORDIO_MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4)


def _new_record(values: np.ndarray, label: np.generic | None) -> tuple[Any, Any]:
    """A Record with its features tensor (returned too, for sparse keys/shape) and optional label."""
    record = Record()
    tensor = getattr(record.features["values"], _tensor_field(values.dtype))
    tensor.values.extend(values.tolist())
    if label is not None:
        getattr(record.label["values"], _tensor_field(label.dtype)).values.append(label.item())
    return record, tensor


def _dense_records(features: np.ndarray, labels: Any) -> Iterator[bytes]:
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"Features must be a 2-D matrix, got shape {features.shape}")
    _checked(features, "Features")
    labels = _checked_labels(labels, features.shape[0])
    for index, row in enumerate(features):
        record, _ = _new_record(row, None if labels is None else labels[index])
        yield _frame(record.SerializeToString())


def write_dense(features: np.ndarray, labels: np.ndarray | None = None) -> bytes:
    """One record per row of a 2-D matrix, bytes-identical to the SDK's `write_numpy_to_dense_tensor`."""
    return b"".join(_dense_records(features, labels))


def write_dense_to(file: IO[bytes], features: np.ndarray, labels: np.ndarray | None = None) -> None:
    """`write_dense`, streamed record by record into a binary file."""
    for framed in _dense_records(features, labels):
        file.write(framed)


def _rows_to_csr(rows: Iterable[tuple[Any, Any]], num_cols: int) -> CsrMatrix:
    pairs = [(np.asarray(keys).ravel(), np.asarray(vals).ravel()) for keys, vals in rows]
    if any(keys.size != vals.size or (keys.size and keys.dtype.kind not in "iu") for keys, vals in pairs):
        raise ValueError("Each sparse row needs integer keys, as many as it has values")
    filled = [(keys.astype(np.int64), vals) for keys, vals in pairs if keys.size]
    # Empty rows come out of np.asarray([]) as float64: they must not decide the tensor type.
    dtype = np.result_type(*[vals.dtype for _, vals in filled]) if filled else np.float32
    return CsrMatrix(
        np.cumsum([0] + [keys.size for keys, _ in pairs]),
        np.concatenate([keys for keys, _ in filled] or [np.zeros(0, np.int64)]),
        np.concatenate([vals for _, vals in filled] or [np.zeros(0)]).astype(dtype),
        num_cols,
    )


def _as_csr(matrix: Any, num_cols: int | None) -> CsrMatrix:
    """Accept a scipy sparse matrix, a (indptr, indices, values, num_cols) tuple or rows of (keys, values)."""
    if hasattr(matrix, "tocsr"):  # scipy, duck-typed so scipy stays an optional dependency
        csr = matrix.tocsr()
        matrix = (csr.indptr, csr.indices, csr.data, csr.shape[1])
    elif num_cols is not None:
        matrix = _rows_to_csr(matrix, num_cols)
    indptr, indices, values, num_cols = matrix
    indptr, indices, values = np.asarray(indptr), np.asarray(indices), np.asarray(values)
    if indices.size and indices.dtype.kind not in "iu":
        raise ValueError(f"Sparse column indices must be integers, got {indices.dtype}")
    num_cols = int(num_cols)
    rising = indptr.ndim == 1 and indptr.size > 0 and indptr[0] == 0 and bool(np.all(np.diff(indptr) >= 0))
    if not rising or indptr[-1] != indices.size or indices.size != values.size:
        raise ValueError("Inconsistent sparse matrix: indptr must rise from 0 to len(indices) == len(values)")
    if indices.size and (indices.min() < 0 or indices.max() >= num_cols):
        raise ValueError(f"Sparse column indices must lie in [0, {num_cols})")
    return CsrMatrix(indptr, indices, values, num_cols)


def _sparse_records(matrix: Any, labels: Any, num_cols: int | None) -> Iterator[bytes]:
    csr = _as_csr(matrix, num_cols)
    _checked(csr.values, "Sparse values")
    labels = _checked_labels(labels, csr.indptr.size - 1)
    for row in range(csr.indptr.size - 1):
        start, stop = csr.indptr[row], csr.indptr[row + 1]
        record, tensor = _new_record(csr.values[start:stop], None if labels is None else labels[row])
        tensor.keys.extend(csr.indices[start:stop].astype(np.uint64).tolist())
        tensor.shape.append(csr.num_cols)
        yield _frame(record.SerializeToString())


def write_sparse(matrix: Any, labels: np.ndarray | None = None, *, num_cols: int | None = None) -> bytes:
    """Sparse records (keys, values, shape=[num_cols]) as the SDK's `write_spmatrix_to_sparse_tensor` writes.

    `matrix` is a scipy sparse matrix, a `CsrMatrix`/(indptr, indices, values, num_cols) tuple, or, when
    `num_cols` is given, a sequence of (keys, values) rows. The tensor type follows the values' dtype.
    """
    return b"".join(_sparse_records(matrix, labels, num_cols))


def encode_predictions(rows: Sequence[Mapping[str, float | Sequence[float]]]) -> bytes:
    """One Record per prediction, each key a float32 tensor in `label` (as built-in algorithms answer)."""
    chunks = []
    for row in rows:
        record = Record()
        for key, value in row.items():
            values = np.asarray(value, dtype=np.float32).ravel()
            record.label[key].float32_tensor.values.extend(values.tolist())
        chunks.append(_frame(record.SerializeToString(deterministic=True)))
    return b"".join(chunks)


def encode(data: Any) -> bytes:
    """The codec-registry entry point: prediction dicts as they are, bare numbers/rows under key "score"."""
    # Imported here: the package's __init__ imports this module.
    from . import predictions_of

    rows = predictions_of(data)
    if isinstance(rows, np.ndarray):
        rows = list(rows) if rows.ndim else [rows]
    elif not isinstance(rows, Sequence) or isinstance(rows, str | bytes):  # one dict or one number
        rows = [rows]
    return encode_predictions([row if isinstance(row, Mapping) else {"score": row} for row in rows])


# ---------------------------------------------------------------------------------------------- reading


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    """Up to `size` bytes; fewer only at end of stream. Grows with the data actually present."""
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(min(remaining, _READ_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _remaining(stream: IO[bytes]) -> int | None:
    """Bytes left in an in-memory stream (a request body); None for files and pipes, read as they come."""
    if isinstance(stream, io.BytesIO):
        with stream.getbuffer() as view:
            return view.nbytes - stream.tell()
    return None


def _payloads(stream: IO[bytes]) -> Iterator[bytes]:
    """Record payloads; multi-part records (continuation flags 1, 2, 3) are joined as MXNet/dmlc does.
    Errors name the record (0-based) and its byte offset."""
    parts: list[bytes] = []
    offset = record = 0
    while True:
        header = _read_exact(stream, _HEADER.size)
        if not header and not parts:
            return
        if len(header) < _HEADER.size:
            raise ValueError(f"Truncated recordIO data: record {record} at byte {offset} has an incomplete header")
        magic, word = _HEADER.unpack(header)
        if magic != RECORDIO_MAGIC:
            raise ValueError(f"Not recordIO data: bad magic 0x{magic:08X} in record {record} at byte {offset}")
        flag, length = word >> 29, word & _LENGTH_MASK
        if flag > 3 or (flag in (2, 3)) != bool(parts):
            raise ValueError(f"Invalid recordIO continuation flag {flag} in record {record} at byte {offset}")
        padded = length + (-length % 4)
        remaining = _remaining(stream)
        if remaining is not None and padded > remaining:  # decided before reading (or allocating) anything
            raise ValueError(
                f"Truncated recordIO: record {record} at byte {offset} declares {length} bytes, {remaining} remain"
            )
        body = _read_exact(stream, padded)
        if len(body) < padded:
            raise ValueError(
                f"Truncated recordIO: record {record} at byte {offset} declares {length} bytes, {len(body)} remain"
            )
        parts.append(body[:length])
        offset += _HEADER.size + padded
        if flag in (0, 3):
            yield _MAGIC_BYTES.join(parts)  # the writer split the record where the magic word occurred
            parts = []
            record += 1


def read_records(data: bytes | bytearray | memoryview | IO[bytes]) -> Iterator[Any]:
    """Parse `Record` messages from recordIO bytes or a binary file; ValueError on malformed input."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    for index, payload in enumerate(_payloads(stream)):
        record = Record()
        try:
            record.ParseFromString(payload)
        except DecodeError as error:
            raise ValueError(f"Record {index} is not a valid aialgs.data.Record protobuf: {error}") from None
        yield record


_TENSOR_DTYPES = {"float32_tensor": np.float32, "float64_tensor": np.float64, "int32_tensor": np.int32}


def _tensor_of(value: Any, where: str) -> tuple[Any, type]:
    """The numeric tensor a Value holds, and the numpy dtype of its values."""
    kind = value.WhichOneof("value")
    if kind not in _TENSOR_DTYPES:
        raise ValueError(f"{where} holds {kind or 'no value'}; only numeric tensors are supported")
    return getattr(value, kind), _TENSOR_DTYPES[kind]


def is_sparse_row(tensor: Any) -> bool:
    """Whether a Float32/Float64/Int32Tensor holds a sparse row (keys, or a shape its values do not fill)."""
    # The SDK writes dense rows without keys or shape; sparse rows always carry shape=[num_cols].
    return len(tensor.keys) > 0 or (len(tensor.shape) > 0 and math.prod(tensor.shape) != len(tensor.values))


def decode(
    data: bytes | IO[bytes], *, densify: bool = True, max_dense_values: int = MAX_DENSE_VALUES
) -> DecodedRecords:
    """Decode a batch of records into a float32 matrix (+ labels); sparse rows also come back as CSR."""
    rows, keys, labels = [], [], []
    first: tuple[bool, int] | None = None  # (is_sparse, width) of record 0; every record must match it
    for index, record in enumerate(read_records(data)):
        if "values" not in record.features:
            raise ValueError(f"Record {index} has no 'values' feature")
        tensor, _ = _tensor_of(record.features["values"], f"Record {index} feature 'values'")
        sparse = is_sparse_row(tensor)
        if sparse and (len(tensor.shape) != 1 or len(tensor.keys) != len(tensor.values)):
            raise ValueError(f"Sparse record {index} needs shape=[num_cols] and one key per value")
        layout = (sparse, int(tensor.shape[0]) if sparse else len(tensor.values))
        first = first or layout
        if layout[0] != first[0]:
            raise ValueError(f"The records mix dense and sparse features (record {index})")
        if layout[1] != first[1]:
            raise ValueError(f"The records have inconsistent feature widths: {first[1]} and {layout[1]}")
        rows.append(np.asarray(tensor.values, dtype=np.float32))
        keys.append(np.asarray(tensor.keys, dtype=np.uint64))
        if "values" in record.label:
            label, dtype = _tensor_of(record.label["values"], f"Record {index} label")
            labels.append(np.asarray(label.values, dtype=dtype))
        else:
            labels.append(None)

    num_rows, (is_sparse, width) = len(rows), first or (False, 0)
    label_array = _stack_labels(labels)
    if not is_sparse:
        _check_dense_size(num_rows, width, max_dense_values)
        features = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
        return DecodedRecords(features.reshape(num_rows, width), label_array, False)

    if width > np.iinfo(np.int64).max:
        raise ValueError(f"Sparse num_cols {width} is out of range")
    indices = np.concatenate(keys)
    if indices.size and indices.max() >= width:
        raise ValueError(f"Sparse keys must lie in [0, {width})")
    indptr = np.cumsum([0] + [row.size for row in rows]).astype(np.int64)
    csr = CsrMatrix(indptr, indices.astype(np.int64), np.concatenate(rows), width)
    features = None
    if densify:
        _check_dense_size(num_rows, width, max_dense_values)
        features = np.zeros((num_rows, width), np.float32)
        np.add.at(features, (np.repeat(np.arange(num_rows), np.diff(indptr)), csr.indices), csr.values)
    return DecodedRecords(features, label_array, True, csr)


def _check_dense_size(num_rows: int, width: int, limit: int) -> None:
    if num_rows * width > limit:
        raise ValueError(f"Refusing to build a {num_rows}x{width} dense matrix (limit {limit} values)")


def _stack_labels(labels: list[np.ndarray | None]) -> np.ndarray | None:
    """None when no record has a label; 1-D for scalar labels, 2-D for vector labels."""
    present = [label is not None for label in labels]
    if not any(present):
        return None
    if not all(present):
        raise ValueError("Some records have a label and others do not")
    if len({label.size for label in labels}) > 1:
        raise ValueError("The records have labels of different lengths")
    stacked = np.stack(labels)
    return stacked[:, 0] if stacked.shape[1] == 1 else stacked
