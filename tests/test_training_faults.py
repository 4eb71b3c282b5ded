"""Bad training inputs, through the real images: every family fails fast (well within 60 s), exits non-zero,
and the failure file's first line names the channel, the file and the record or line (or the hyperparameter
and its allowed range), with no traceback in it.

Each fault at least once, each family at least twice: truncated recordIO (File and Pipe mode), ragged and
non-numeric text rows, a truncated gzip, a ContentType that disagrees with the files, an empty channel, a
missing required channel, out-of-range hyperparameters.
"""

from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from byoc_runtime.codecs import recordio_protobuf
from local.opt_ml import ChannelSpec
from tests.images import build_image

pytestmark = pytest.mark.docker
RECORDIO = "application/x-recordio-protobuf"
FM_HP = {"feature_dim": 4, "num_factors": 2, "predictor_type": "binary_classifier", "epochs": 1}
MF_HP = {"epochs": 1, "num_factors": 4}
NCF_HP = {"epochs": 1, "pretrain": False}
CNN_HP = {"network": "mlp", "epochs": 1}


@dataclass(frozen=True)
class Fault:
    family: str
    channels: Callable[[Path], dict[str, ChannelSpec]]
    first_line: str  # a regex the failure file's first line must match from its start
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Every bad input of the matrix, written once."""
    d = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 4), dtype=np.float32), (rng.random(50) < 0.5).astype(np.float32)
    body = recordio_protobuf.write_dense(x, y)
    (d / "train.rec").write_bytes(body[: len(body) - 7])  # the last record loses 7 bytes
    (d / "data.csv").write_text("1,0.5,0.25,0,1\n0,1,1,1,1\n")
    (d / "ragged.csv").write_text("1,0.5,0.25,0,1\n0,1,1,1,1\n1,2,3\n0,1,1,1,1\n")
    (d / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\tx\t878887116\n")
    (d / "ratings.dat").write_text("1::10::5::100\n1::20::3::200\n2::10::4::50\n2::30::4\n")
    (d / "linear.csv").write_text("1,2,3\n4,5,abc\n")
    images = struct.pack(">BBBB3I", 0, 0, 8, 3, 200, 28, 28) + rng.integers(0, 256, 200 * 784, np.uint8).tobytes()
    mnist = d / "mnist"
    mnist.mkdir()
    compressed = gzip.compress(images, compresslevel=1)
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(compressed[: len(compressed) // 2])
    labels = struct.pack(">BBBBI", 0, 0, 8, 1, 200) + bytes(i % 10 for i in range(200))
    (mnist / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    (d / "empty").mkdir()
    return d


FAULTS = {
    "fm-truncated-recordio": Fault(
        "fm",
        lambda d: {"train": ChannelSpec(d / "train.rec", RECORDIO)},
        r"Channel 'train': train\.rec is truncated: record 49 at byte \d+ declares \d+ bytes, \d+ remain$",
        FM_HP,
    ),
    "fm-truncated-recordio-pipe": Fault(
        "fm",
        lambda d: {"train": ChannelSpec(d / "train.rec", RECORDIO, input_mode="Pipe")},
        r"Channel 'train': train_0 is truncated: record 49 at byte \d+ declares \d+ bytes, \d+ remain$",
        FM_HP,
    ),
    "fm-csv-declared-recordio": Fault(
        "fm",
        lambda d: {"train": ChannelSpec(d / "data.csv", RECORDIO)},
        r"Channel 'train' is declared application/x-recordio-protobuf but data\.csv looks like CSV text "
        r"\('1,0\.5,0\.25,0,1'\)",
        FM_HP,
    ),
    "fm-ragged-csv": Fault(
        "fm",
        lambda d: {"train": ChannelSpec(d / "ragged.csv", "text/csv")},
        r"Channel 'train': ragged\.csv line 3 has 3 columns; expected 5: the label, then feature_dim=4 features",
        FM_HP,
    ),
    "fm-hyperparameter": Fault(
        "fm",
        lambda d: {"train": ChannelSpec(d / "data.csv", "text/csv")},
        r"Hyperparameter 'num_factors' is invalid: 0 is below the minimum 1 \(allowed: 1 or more\)$",
        {**FM_HP, "num_factors": 0},
    ),
    "mxnet-mf-non-numeric-rating": Fault(
        "mxnet-mf",
        lambda d: {"train": ChannelSpec(d / "u.data")},
        r"Channel 'train': u\.data line 3: the rating 'x' is not a number$",
        MF_HP,
    ),
    "mxnet-mf-recordio-content-type": Fault(
        "mxnet-mf",
        lambda d: {"train": ChannelSpec(d / "u.data", RECORDIO)},
        r"Channel 'train' is declared application/x-recordio-protobuf but u\.data looks like tab-separated text",
        MF_HP,
    ),
    "mxnet-mf-hyperparameter": Fault(
        "mxnet-mf",
        lambda d: {"train": ChannelSpec(d / "u.data")},
        r"Hyperparameter 'num_factors' is invalid: 5000 is above the maximum 4096 \(allowed: 1 to 4096\)$",
        {**MF_HP, "num_factors": 5000},
    ),
    "ncf-tf-ragged-line": Fault(
        "ncf-tf",
        lambda d: {"training": ChannelSpec(d / "ratings.dat")},
        r"Channel 'training': ratings\.dat line 4 has 3 columns; line 1 has 4",
        NCF_HP,
    ),
    "ncf-tf-missing-channel": Fault(
        "ncf-tf",
        lambda d: {"test": ChannelSpec(d / "ratings.dat")},
        r"Give the ratings in a channel named 'training' or 'train' \(channels given: test\)$",
        NCF_HP,
    ),
    "gluon-cnn-truncated-gzip": Fault(
        "gluon-cnn",
        lambda d: {"train": ChannelSpec(d / "mnist")},
        r"Channel 'train': train-images-idx3-ubyte\.gz is a truncated gzip file: its \d+ bytes decompress to \d+ "
        r"bytes and the stream ends early; its header declares shape \(200, 28, 28\); image \d+ of 200 is the first "
        r"incomplete one",
        CNN_HP,
    ),
    "gluon-cnn-empty-channel": Fault(
        "gluon-cnn",
        lambda d: {"train": ChannelSpec(d / "empty")},
        r"Channel 'train' is empty: no files in /opt/ml/input/data/train$",
        CNN_HP,
    ),
    "linear-non-numeric-csv": Fault(
        "test-linear",
        lambda d: {"train": ChannelSpec(d / "linear.csv", "text/csv")},
        r"Channel 'train': linear\.csv line 2, column 3: 'abc' is not a number$",
    ),
    "linear-missing-channel": Fault(
        "test-linear",
        lambda d: {"test": ChannelSpec(d / "linear.csv", "text/csv")},
        r"Channel 'train' is required but was not provided \(channels given: test\)$",
    ),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_a_bad_input_fails_fast_and_names_itself(harness, data, fault, dump_logs_on_failure):
    image = build_image(fault.family)
    result = harness.train(image, fault.hyperparameters, fault.channels(data), timeout=120)
    dump_logs_on_failure(result)
    host = result.master
    assert host.exit_code != 0, host.logs[-3000:]
    assert result.seconds < 60
    assert host.failure, f"no failure file; logs:\n{host.logs[-3000:]}"
    first = host.failure.splitlines()[0]
    assert re.match(fault.first_line, first), first
    assert "Traceback" not in first and len(first) <= 1024
    print(f"\n{fault.family}: exit {host.exit_code} in {result.seconds:.1f} s: {first}")
