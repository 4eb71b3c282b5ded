"""`train` for the FM image: the built-in factorization-machines job, channels `train` and optional `test`.

Multi-host: every host trains on its share of the rows (FullyReplicated channels are split by host rank,
ShardedByS3Key channels are used as delivered) and gradients are summed through a dist_sync kvstore.
Checkpoints (parameters + Adam state) go to the checkpoint dir after every epoch and on SIGTERM.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime import distributed, interrupt
from byoc_runtime.checkpoints import CheckpointStore
from byoc_runtime.metrics import log_metric, write_metrics
from byoc_runtime.training_env import TrainingEnv

from . import artifact, dist, scoring, spec
from .data import CsrData, read_channel
from .engine import FMTrainer

log = logging.getLogger("fm_algo")
CHECKPOINT_NAME = "fm_checkpoint.npz"
CHECKPOINT_STORE = "fm"
EVAL_CHUNK = 50_000


def _host_share(data: CsrData, env: TrainingEnv, channel_config: dict[str, Any]) -> CsrData:
    if len(env.hosts) < 2 or channel_config.get("S3DistributionType") == "ShardedByS3Key":
        return data
    return data.take(np.arange(env.host_rank, len(data), len(env.hosts)))


def evaluate(model, data: CsrData) -> np.ndarray:
    chunks = [
        model.scores(data.take(np.arange(i, min(i + EVAL_CHUNK, len(data))))) for i in range(0, len(data), EVAL_CHUNK)
    ]
    return np.concatenate(chunks)


def train(env: TrainingEnv) -> None:
    hp = spec.parse(env.hyperparameters)
    # Multi-host: ps-lite scheduler/servers as child processes, before MXNet is imported (dist.py).
    children = distributed.start_mxnet_parameter_servers(env)
    try:
        _train(env, hp)
    finally:
        distributed.stop_children(children, timeout=30)


def _train(env: TrainingEnv, hp: dict[str, Any]) -> None:
    train_channel = env.channel("train")
    train_data = read_channel(train_channel, hp["feature_dim"], hp["predictor_type"])
    test_channel = env.channel("test", required=False)
    test_data = read_channel(test_channel, hp["feature_dim"], hp["predictor_type"]) if test_channel else None
    local = _host_share(train_data, env, train_channel.config)
    log.info(
        "train: %d records (%d on this host), %d non-zeros; test: %s",
        len(train_data),
        len(local),
        train_data.nnz,
        len(test_data) if test_data is not None else "none",
    )
    reducer = dist.reducer_for(env, hp["feature_dim"], hp["num_factors"])
    try:
        _fit(env, hp, FMTrainer(hp, reducer), local, test_data)
    finally:
        if reducer is not None:
            reducer.close()  # while the ps-lite scheduler and servers still run


def _fit(env: TrainingEnv, hp: dict[str, Any], trainer: FMTrainer, local: CsrData, test_data: CsrData | None) -> None:
    reducer = trainer.reducer
    first_epoch = _resume(trainer, env.checkpoint_dir / CHECKPOINT_NAME)
    batch_size = hp["mini_batch_size"]
    batches = math.ceil(len(local) / batch_size)
    if reducer is not None:
        batches = reducer.max(batches)
    interrupt.cooperate()
    metrics: dict[str, Any] = {}
    for epoch in range(first_epoch, hp["epochs"]):
        started, total_loss, examples = time.perf_counter(), 0.0, 0
        order = np.random.default_rng(epoch).permutation(len(local))
        for number in range(batches):
            start = (number * batch_size) % len(local)  # a host with fewer rows wraps around
            batch = local.take(order[start : start + batch_size])
            total_loss += trainer.step(batch)
            examples += len(batch)
            if interrupt.requested():
                _checkpoint(trainer, env, epoch)
                log.info("SIGTERM: checkpoint saved in epoch %d", epoch)
                return
        seconds = time.perf_counter() - started
        print(
            f"#throughput_metric: host={env.current_host}, train throughput={examples / seconds:.1f} records/second",
            flush=True,
        )
        metrics["train:throughput"] = examples / seconds
        log_metric("train:throughput", examples / seconds, epoch=epoch)
        mean_loss = total_loss / max(examples, 1)
        loss = (
            {"binary_classification_cross_entropy": mean_loss}
            if hp["predictor_type"] == "binary_classifier"
            else {"rmse": math.sqrt(2 * mean_loss)}
        )
        metrics.update(scoring.report(loss, "train", env.current_host, epoch=epoch))
        _checkpoint(trainer, env, epoch + 1)
    model = trainer.model()
    if test_data is not None:
        test_metrics = scoring.compute(hp["predictor_type"], evaluate(model, test_data), test_data.labels)
        metrics.update(scoring.report(test_metrics, "test", env.current_host))
    metrics["epochs"] = hp["epochs"]
    write_metrics(metrics, env.paths)
    if env.is_master:
        artifact.save(model, env.paths.model_dir)


def _checkpoint(trainer, env: TrainingEnv, epochs_done: int) -> None:
    """fm-<epoch>/fm_checkpoint.npz + MANIFEST.json (byoc_runtime.checkpoints: the newest three are kept)."""
    if not env.is_master:
        return
    with CheckpointStore(env.checkpoint_dir, CHECKPOINT_STORE).save(epochs_done) as scratch:
        np.savez(scratch / CHECKPOINT_NAME, epoch=np.array(epochs_done), **trainer.state())


def _resume(trainer, path: Path) -> int:
    """Epochs done by the newest intact checkpoint in path's directory (0: none); skipped ones are logged."""

    def load(checkpoint) -> int:
        with np.load(checkpoint.file(path.name), allow_pickle=False) as saved:
            state = dict(saved)
        trainer.load_state(state)
        return int(state["epoch"])

    found = CheckpointStore(path.parent, CHECKPOINT_STORE).restore(load)
    if found is None:
        return 0
    log.info("resuming from %s after %d epochs", found[0].path, found[1])
    return found[1]
