"""fm-client's recordIO-protobuf writer: the same bytes as the SageMaker SDK's, for numpy, scipy and pandas."""

import io

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from fm_client.recordio import read_recordio, to_recordio, write_shards

sdk = pytest.importorskip("sagemaker.amazon.common")  # the SDK is on the host: this is the reference


def sdk_dense(x, y=None):
    buffer = io.BytesIO()
    sdk.write_numpy_to_dense_tensor(buffer, x, y)
    return buffer.getvalue()


def sdk_sparse(x, y=None):
    buffer = io.BytesIO()
    sdk.write_spmatrix_to_sparse_tensor(buffer, x, y)
    return buffer.getvalue()


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # the SDK refuses other feature types
def test_dense_bytes_match_the_sdk(dtype):
    x = (RNG.normal(size=(7, 5)) * 10).astype(dtype)
    y = RNG.integers(0, 2, 7).astype(np.float32)
    assert to_recordio(x, y) == sdk_dense(x, y)
    assert to_recordio(x) == sdk_dense(x)


def test_pandas_frames_give_the_numpy_bytes():
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    y = np.array([0, 1, 1, 0], np.float32)
    assert to_recordio(pd.DataFrame(x), pd.Series(y)) == sdk_dense(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_bytes_match_the_sdk(dtype):
    x = scipy.sparse.random(9, 100_000, density=0.0001, format="csr", random_state=1, dtype=dtype)
    y = RNG.normal(size=9).astype(np.float32)
    assert to_recordio(x, y) == sdk_sparse(x, y)
    one_hot = scipy.sparse.csr_matrix((np.ones(4, np.float32), ([0, 0, 1, 1], [3, 12, 5, 20])), shape=(2, 30))
    assert to_recordio(one_hot, np.array([4.0, 2.0], np.float32)) == sdk_sparse(
        one_hot, np.array([4.0, 2.0]).astype(np.float32)
    )


def test_shards_split_rows_and_read_back(tmp_path):
    x = scipy.sparse.random(25, 50, density=0.1, format="csr", random_state=2, dtype=np.float32)
    y = np.arange(25, dtype=np.float32)
    paths = write_shards(tmp_path, x, y, num_shards=3)
    assert [p.name for p in paths] == ["part-00000.rec", "part-00001.rec", "part-00002.rec"]
    joined = b"".join(p.read_bytes() for p in paths)
    assert joined == sdk_sparse(x, y)  # shard boundaries fall between records
    decoded = read_recordio(paths[0])
    assert decoded.is_sparse and decoded.sparse.num_cols == 50 and decoded.labels.tolist() == list(range(9))
