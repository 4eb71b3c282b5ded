"""fm streams its channels: 2 GiB of recordIO-protobuf through a Pipe-mode FIFO into a container limited to
1 GiB of memory (no swap). The harness's feeder streams one 64 MiB file 32 times (ChannelSpec.repeat), so the
disk holds 64 MiB while the container reads 2 GiB; the job must train on every record and finish."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from byoc_runtime.codecs import recordio_protobuf
from local.opt_ml import ChannelSpec
from tests.images import build_image

pytestmark = pytest.mark.docker
RECORDIO = "application/x-recordio-protobuf"
WIDTH = 1000  # dense float32 features per record: 4 KB records parse at ~100 MB/s
FILE_BYTES = 64 * 1024**2
REPEAT = 32  # 32 x 64 MiB = 2 GiB


@pytest.fixture(scope="module")
def image():
    return build_image("fm")


def _records(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((rows, WIDTH), dtype=np.float32)
    y = (x[:, 0] + x[:, 1] > 1.0).astype(np.float32)  # learnable: the sum of two features
    return x, y


def test_trains_on_a_2_gib_pipe_channel_within_1_gib_of_memory(harness, image, tmp_path, dump_logs_on_failure):
    x, y = _records(100, seed=0)
    record_bytes = len(recordio_protobuf.write_dense(x, y)) // len(x)
    rows = math.ceil(FILE_BYTES / record_bytes)
    x, y = _records(rows, seed=0)
    with open(tmp_path / "train.rec", "wb") as out:
        recordio_protobuf.write_dense_to(out, x, y)
    size = (tmp_path / "train.rec").stat().st_size
    assert size * REPEAT >= 2 * 1024**3
    tx, ty = _records(2000, seed=1)
    (tmp_path / "test.rec").write_bytes(recordio_protobuf.write_dense(tx, ty))
    hp = {
        "feature_dim": WIDTH,
        "num_factors": 4,
        "predictor_type": "binary_classifier",
        "epochs": 1,
        "mini_batch_size": 1000,
        "linear_lr": 0.01,
    }
    channels = {
        "train": ChannelSpec(tmp_path / "train.rec", RECORDIO, input_mode="Pipe", repeat=REPEAT),
        "test": ChannelSpec(tmp_path / "test.rec", RECORDIO),
    }
    result = harness.train(
        image, hp, channels, container_options={"mem_limit": "1g", "memswap_limit": "1g"}, timeout=600
    )
    dump_logs_on_failure(result)
    assert result.master.exit_code == 0, result.logs()[-5000:]  # 137 would be the OOM killer
    total = rows * REPEAT
    metrics = json.loads((result.output_data_dir / "metrics.json").read_text())
    assert metrics["train:records"] == total
    logs = result.master.logs
    assert f"epoch 0: {total} records read from channel 'train', {total} trained on this host" in logs
    assert metrics["test:binary_classification_accuracy"] > 0.6  # it learned something from the stream
    peak = float(re.search(r"peak memory of the training process: (\d+) MiB", logs).group(1))
    assert peak < 1024
    print(
        f"\n2 GiB Pipe-mode job: {size * REPEAT / 1024**3:.2f} GiB, {total} records in {result.seconds:.1f} s "
        f"({metrics['train:throughput']:.0f} records/s, {size * REPEAT / 1e6 / result.seconds:.1f} MB/s end to end), "
        f"peak RSS {peak:.0f} MiB under --memory 1g"
    )
