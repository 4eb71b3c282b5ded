"""Train ridge regression on CSV (label in the first column) or recordIO-protobuf, File or Pipe mode.

epochs=0 solves in closed form; epochs>0 runs gradient descent with a checkpoint per epoch, resumes from
the last checkpoint and stops cleanly on SIGTERM (what the docker tests of the runtime exercise).
"""

from __future__ import annotations

import time

import numpy as np

from byoc_runtime import atomic, interrupt
from byoc_runtime.checkpoints import CheckpointStore
from byoc_runtime.codecs import recordio_protobuf
from byoc_runtime.errors import DataError
from byoc_runtime.hyperparameters import Param, validate
from byoc_runtime.metrics import log_metric, write_metrics
from byoc_runtime.training_data import (
    HEAD_BYTES,
    channel_blobs,
    check_file_kind,
    decode_utf8,
    numeric_table,
    recordio_problem,
)
from byoc_runtime.training_env import Channel, TrainingEnv

CHECKPOINT_FILE = "linear.npz"
READS = "the linear family reads text/csv (label first) or application/x-recordio-protobuf: declare the matching one"
SPEC = {
    "l2": Param(float, 0.0, min=0.0, help="ridge penalty"),
    "epochs": Param(int, 0, min=0, max=100000, help="0 = closed form, else gradient-descent epochs"),
    "learning_rate": Param(float, 0.1, min=0.0, help="gradient-descent step"),
    "epoch_seconds": Param(float, 0.0, min=0.0, help="sleep per epoch (tests of SIGTERM and resume)"),
}


def read_channel(channel: Channel, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of a channel; a bad file fails naming the channel, the file and the line or record."""
    recordio = (channel.content_type or "").startswith("application/x-recordio-protobuf")
    blobs = channel_blobs(channel, epoch)
    for name, blob in blobs:
        check_file_kind(
            channel.name, channel.content_type, name, blob[:HEAD_BYTES], ("recordio",) if recordio else ("text",), READS
        )
    if recordio:
        xs, ys = [], []
        for name, blob in blobs:
            where = f"Channel '{channel.name}': {name}"
            try:
                decoded = recordio_protobuf.decode(blob)
            except ValueError as err:
                raise DataError(recordio_problem(where, str(err))) from None
            if decoded.labels is None:
                raise DataError(f"{where} has records without labels; training needs one per record")
            xs.append(decoded.features)
            ys.append(decoded.labels.ravel())
        return np.vstack(xs), np.concatenate(ys)
    tables, width = [], None
    for name, blob in blobs:
        where = f"Channel '{channel.name}': {name}"
        table = numeric_table(decode_utf8(blob, where), where, columns=width, why=" (as in the channel's first file)")
        if len(table) and table.shape[1] < 2:
            raise DataError(f"{where} has rows of {table.shape[1]} column; the label then at least one feature needed")
        if len(table):
            tables.append(table)
            width = table.shape[1]
    if not tables:
        raise DataError(f"Channel '{channel.name}' holds no rows")
    table = np.vstack(tables)
    return table[:, 1:], table[:, 0]


def train(env: TrainingEnv) -> None:
    hp = validate(env.hyperparameters, SPEC)
    x, y = read_channel(env.channel("train"))
    x1 = np.hstack([x, np.ones((len(x), 1))])
    store = CheckpointStore(env.checkpoint_dir, "linear")  # linear-000042/linear.npz + MANIFEST.json
    if hp["epochs"] == 0:
        penalty = hp["l2"] * np.eye(x1.shape[1])
        penalty[-1, -1] = 0.0
        weights = np.linalg.solve(x1.T @ x1 + penalty, x1.T @ y)
        epochs_done = 0
    else:
        interrupt.cooperate()
        weights, start = np.zeros(x1.shape[1]), 0
        found = store.restore(_load_checkpoint)
        if found is not None:
            weights, start = found[1]
            print(f"resuming from checkpoint at epoch {start}", flush=True)
        epochs_done = start
        for epoch in range(start, hp["epochs"]):
            grad = x1.T @ (x1 @ weights - y) / len(y) + hp["l2"] * np.r_[weights[:-1], 0.0]
            weights = weights - hp["learning_rate"] * grad
            epochs_done = epoch + 1
            with store.save(epochs_done) as scratch:
                np.savez(scratch / CHECKPOINT_FILE, weights=weights, epoch=epochs_done)
            log_metric("train_mse", float(np.mean((x1 @ weights - y) ** 2)), epoch=epochs_done)
            time.sleep(hp["epoch_seconds"])
            if interrupt.requested():
                print(f"SIGTERM: checkpoint saved at epoch {epochs_done}", flush=True)
                return
    mse = float(np.mean((x1 @ weights - y) ** 2))
    log_metric("train_mse", mse)
    metrics = {"train_mse": mse, "epochs": epochs_done}
    test = env.channel("test", required=False)
    if test is not None:
        tx, ty = read_channel(test)
        metrics["test_mse"] = float(np.mean((np.hstack([tx, np.ones((len(tx), 1))]) @ weights - ty) ** 2))
        log_metric("test_mse", metrics["test_mse"])
    write_metrics(metrics, env.paths)
    if env.is_master:
        env.paths.model_dir.mkdir(parents=True, exist_ok=True)
        atomic.save_npz(env.paths.model_dir / "model.npz", weights=weights[:-1], bias=weights[-1])
        atomic.write_json(env.paths.model_dir / "hyperparameters.json", hp, indent=None)


def _load_checkpoint(checkpoint) -> tuple[np.ndarray, int]:
    with np.load(checkpoint.file(CHECKPOINT_FILE), allow_pickle=False) as saved:
        return saved["weights"], int(saved["epoch"])
