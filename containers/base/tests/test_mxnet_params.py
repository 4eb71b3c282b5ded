"""byoc_runtime.mxnet_params: MXNet's NDArray files read without MXNet (checked against mx.nd.save's output
in the images; here against bytes written to the format's description), and bad files named."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from byoc_runtime import mxnet_params
from byoc_runtime.mxnet_params import ParamsError

FLAGS = {np.dtype("float32"): 0, np.dtype("float64"): 1, np.dtype("uint8"): 3, np.dtype("int32"): 4,
         np.dtype("int64"): 6}  # fmt: skip


def ndarray_file(arrays: dict[str, np.ndarray], names: bool = True) -> bytes:
    """What mx.nd.save writes (V2 arrays, dense, saved from the CPU)."""
    out = [struct.pack("<QQQ", 0x112, 0, len(arrays))]
    for value in arrays.values():
        out.append(struct.pack("<Iii", mxnet_params.V2_MAGIC, 0, value.ndim))
        out.append(struct.pack(f"<{value.ndim}q", *value.shape))
        out.append(struct.pack("<iii", 1, 0, FLAGS[value.dtype]) + np.ascontiguousarray(value).tobytes())
    out.append(struct.pack("<Q", len(arrays) if names else 0))
    for name in arrays if names else ():
        out.append(struct.pack("<Q", len(name.encode())) + name.encode())
    return b"".join(out)


def test_arrays_and_names_round_trip():
    arrays = {"arg:conv0_weight": np.random.default_rng(0).random((4, 1, 5, 5), np.float32),
              "aux:bn_running_var": np.arange(3, dtype=np.float64), "w": np.arange(6, dtype=np.int64).reshape(2, 3),
              "u": np.array([1, 2], np.uint8)}  # fmt: skip
    read = mxnet_params.loads(ndarray_file(arrays))
    assert list(read) == list(arrays)
    for name, value in arrays.items():
        assert read[name].dtype == value.dtype and np.array_equal(read[name], value)
    unnamed = mxnet_params.loads(ndarray_file({"a": np.ones(2, np.float32)}, names=False))
    assert list(unnamed) == ["0"]


def test_bad_files_are_named_not_crashed(tmp_path):
    good = ndarray_file({"a": np.ones((2, 2), np.float32)})
    with pytest.raises(ParamsError, match="not an MXNet NDArray file"):
        mxnet_params.loads(b"\x00" * 32, "x.params")
    with pytest.raises(ParamsError, match="truncated"):
        mxnet_params.loads(good[:-20], "x.params")
    huge = bytearray(good)
    huge[36:44] = struct.pack("<q", 10**12)  # the first dimension claims far more than the file holds
    with pytest.raises(ParamsError, match="more than the file holds"):
        mxnet_params.loads(bytes(huge), "x.params")
    (tmp_path / "m.params").write_bytes(good)
    assert mxnet_params.load(tmp_path / "m.params")["a"].shape == (2, 2)
