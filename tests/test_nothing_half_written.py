"""Nothing half-written, in every family's real image (issue 12, item 5).

(i) A power loss that truncates the newest checkpoint: the next job skips it, says so in the log and in
metrics.json, resumes from the previous intact one and finishes (exit 0).
(ii) A full disk: /opt/ml/model on a 16 KiB tmpfs, too small for any family's model. The job exits non-zero
within 60 s and the failure file's first line is "No space left on device while writing <the file>", naming a
path under /opt/ml/model, with no traceback in it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from byoc_runtime.checkpoints import CheckpointStore
from byoc_runtime.codecs import recordio_protobuf
from local.opt_ml import ChannelSpec
from tests.images import build_image

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[1]
DISK_FULL_SECONDS = 60
RESUME_RUN_SECONDS = 180  # a whole job (container start included) on a busy 2-core machine
TINY_MODEL_VOLUME = {"tmpfs": {"/opt/ml/model": "size=16k"}}
FIRST_LINE = "No space left on device while writing /opt/ml/model/"


# ---------------------------------------------------------------- tiny data per family
def mxnet_mf_channels(root: Path) -> dict[str, ChannelSpec]:
    from mxnet_mf import synthetic

    ratings = synthetic.generate(
        num_users=150, num_items=200, num_ratings=6000, rank=4, noise=0.25, factor_scale=1.0, planted_pairs=0, seed=3
    )
    ratings.write(root / "train" / "u.data", "u.data")
    return {"train": ChannelSpec(root / "train")}


def gluon_cnn_channels(root: Path) -> dict[str, ChannelSpec]:
    sample = ROOT / "containers" / "gluon-cnn" / "sample" / "mnist"
    (root / "train").mkdir(parents=True)
    for source in sample.glob("train-*"):
        (root / "train" / source.name).write_bytes(source.read_bytes())
    return {"train": ChannelSpec(root / "train")}


def fm_channels(root: Path) -> dict[str, ChannelSpec]:
    from fm_client import mnist

    x, y = mnist.load_binary(mnist.SAMPLE_DIR, "train", limit=1000)
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.rec").write_bytes(recordio_protobuf.write_dense(x, y))
    return {"train": ChannelSpec(root / "train.rec", "application/x-recordio-protobuf")}


def ncf_tf_channels(root: Path) -> dict[str, ChannelSpec]:
    from ncf_tf import synthetic

    synthetic.write(synthetic.planted_ratings(n_users=100, n_items=150, per_user=20), root, "u.data")
    return {"training": ChannelSpec(root)}


def linear_channels(root: Path, features: int = 3) -> dict[str, ChannelSpec]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, features))
    y = x @ rng.normal(size=features) + 0.5
    root.mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "train.csv", np.c_[y, x], delimiter=",")
    return {"train": ChannelSpec(root / "train.csv", "text/csv")}


@dataclass(frozen=True)
class Family:
    name: str  # as build.sh knows it
    channels: Callable[[Path], dict[str, ChannelSpec]]
    hyperparameters: dict[str, Any]
    store: str  # the CheckpointStore name
    cut: str  # the file a power loss truncates in the newest checkpoint
    resumed: str  # the family's own log line, with {epoch}
    subdir: str = ""  # checkpoints below the checkpoint directory (ncf-tf: one folder per host)
    model_file: str = ""  # the file the disk-full failure names ("" = any under /opt/ml/model)
    disk_full_channels: Callable[[Path], dict[str, ChannelSpec]] | None = None
    disk_full_hyperparameters: dict[str, Any] = field(default_factory=dict)
    epochs_metric: Callable[[int], Any] = lambda epochs: epochs  # metrics.json's "epochs" after `epochs`


FAMILIES = [
    Family(
        "mxnet-mf",
        mxnet_mf_channels,
        {"model": "mf", "num_factors": 8, "learning_rate": 0.01, "seed": 1},
        "mxnet_mf",
        "mxnet_mf.params",
        "resuming from checkpoint at epoch {epoch}",
        model_file="model.npz",
    ),
    Family(
        "gluon-cnn",
        gluon_cnn_channels,
        {"network": "mlp", "log_interval": 0},
        "gluon-cnn",
        "gluon-cnn.params",
        "resuming from checkpoint at epoch {epoch}",
        model_file="model-0000.params",
    ),
    Family(
        "fm",
        fm_channels,
        {"feature_dim": 784, "num_factors": 10, "predictor_type": "binary_classifier", "mini_batch_size": 200},
        "fm",
        "fm_checkpoint.npz",
        "after {epoch} epochs",
        model_file="fm_model.npz",
    ),
    Family(
        "ncf-tf",
        ncf_tf_channels,
        {"pretrain": False, "batch_size": 256, "eval_negatives": 20},
        "neumf",
        "ckpt.data-00000-of-00001",
        "resuming neumf from the checkpoint after epoch {epoch}",
        subdir="algo-1",
        epochs_metric=lambda epochs: {"neumf": epochs},
    ),
    Family(
        "test-linear",
        linear_channels,
        {"learning_rate": 0.05},
        "linear",
        "linear.npz",
        "resuming from checkpoint at epoch {epoch}",
        model_file="model.npz",
        # 3,000 weights (24 KB) do not fit in 16 KiB; one gradient step keeps it quick.
        disk_full_channels=lambda root: linear_channels(root, features=3000),
    ),
]
IDS = [family.name for family in FAMILIES]


def metrics_of(result) -> dict[str, Any]:
    return json.loads((result.output_data_dir / "metrics.json").read_text())


def truncate(path: Path) -> None:
    """A power loss mid-write: the file keeps only its first half."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_a_truncated_newest_checkpoint_resumes_from_the_previous_one(harness, family, tmp_path, dump_logs_on_failure):
    image = build_image(family.name)
    channels = family.channels(tmp_path / "data")
    checkpoints = tmp_path / "checkpoints"
    store = CheckpointStore(checkpoints / family.subdir, family.store)

    first = harness.train(image, {**family.hyperparameters, "epochs": 3}, channels, checkpoint_dir=checkpoints)
    dump_logs_on_failure(first)
    assert first.master.exit_code == 0, first.logs()
    assert first.seconds < RESUME_RUN_SECONDS
    assert store.steps() == [3, 2, 1]  # numbered, the newest three kept
    truncate(store.path_of(3) / family.cut)

    second = harness.train(image, {**family.hyperparameters, "epochs": 4}, channels, checkpoint_dir=checkpoints)
    dump_logs_on_failure(second)
    assert second.master.exit_code == 0, second.logs()
    assert second.seconds < RESUME_RUN_SECONDS
    assert second.master.failure is None
    logs = second.master.logs
    skipped = f"/opt/ml/checkpoints/{family.subdir + '/' if family.subdir else ''}{family.store}-000003"
    assert f"WARNING byoc_runtime.checkpoints: skipping checkpoint {skipped}: {family.cut} is " in logs
    assert "(truncated?)" in logs
    assert family.resumed.format(epoch=2) in logs
    assert family.resumed.format(epoch=3) not in logs
    metrics = metrics_of(second)
    assert metrics["epochs"] == family.epochs_metric(4)
    outcome = metrics["checkpoints"][family.store]
    assert outcome["resumed_from"] == 2
    assert [s["checkpoint"] for s in outcome["skipped"]] == [f"{family.store}-000003"]
    # Epochs 3 and 4 were trained again: the new newest checkpoint is 4, intact, and the corrupt 3 rewritten.
    assert store.steps() == [4, 3, 2]
    assert store.latest().step == 4


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_a_full_model_volume_fails_fast_naming_the_file(harness, family, tmp_path, dump_logs_on_failure):
    image = build_image(family.name)
    channels = (family.disk_full_channels or family.channels)(tmp_path / "data")
    hyperparameters = {**family.hyperparameters, "epochs": 1, **family.disk_full_hyperparameters}
    result = harness.train(image, hyperparameters, channels, container_options=TINY_MODEL_VOLUME)
    dump_logs_on_failure(result)
    assert result.master.exit_code != 0
    assert result.seconds < DISK_FULL_SECONDS, f"{result.seconds:.1f} s"
    assert result.master.failure is not None, result.logs()
    first_line = result.master.failure.splitlines()[0]
    assert first_line.startswith(FIRST_LINE + family.model_file), first_line
    assert "Traceback" not in first_line and "Error:" not in first_line
    assert result.model_archive is None
