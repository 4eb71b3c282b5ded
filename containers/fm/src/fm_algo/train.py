"""`train` for the FM image: the built-in factorization-machines job, channels `train` and optional `test`.

The channels are streamed (channel.py): each epoch reads the train channel again (Pipe mode: the epoch's
FIFO), in mini-batches, so memory does not grow with the data. Multi-host: every host trains on its share of
the records (FullyReplicated channels are split by record number, ShardedByS3Key channels are used as
delivered) and gradients are summed through a dist_sync kvstore; a host whose share is used up takes part in
the sums with nothing to add until no host has a batch left (every host runs the same number of steps).
Checkpoints (parameters + Adam state) go to the checkpoint dir after every epoch and on SIGTERM.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime import distributed, interrupt
from byoc_runtime.checkpoints import CheckpointStore
from byoc_runtime.metrics import log_metric, write_metrics
from byoc_runtime.training_env import TrainingEnv

from . import artifact, dist, scoring, spec
from .channel import ChannelData
from .engine import FMTrainer

log = logging.getLogger("fm_algo")
CHECKPOINT_NAME = "fm_checkpoint.npz"
CHECKPOINT_STORE = "fm"
EVAL_CHUNK = 50_000


def _host_share(env: TrainingEnv, channel_config: dict[str, Any]) -> tuple[int, int]:
    """(rank, hosts) of this host's share of a channel: (0, 1) = every record."""
    if len(env.hosts) < 2 or channel_config.get("S3DistributionType") == "ShardedByS3Key":
        return 0, 1
    return env.host_rank, len(env.hosts)


def evaluate_channel(model, data: ChannelData) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels) of every record of a channel, read once in chunks."""
    scores, labels = [], []
    for chunk in data.chunks(0, EVAL_CHUNK):
        scores.append(model.scores(chunk))
        labels.append(chunk.labels)
    return np.concatenate(scores), np.concatenate(labels)


def train(env: TrainingEnv) -> None:
    hp = spec.parse(env.hyperparameters)
    train_data, test_data = _channels(env, hp)  # the cheap checks, before ps-lite and MXNet start
    # Multi-host: ps-lite scheduler/servers as child processes, before MXNet is imported (dist.py).
    children = distributed.start_mxnet_parameter_servers(env)
    try:
        _train(env, hp, train_data, test_data)
    finally:
        distributed.stop_children(children, timeout=30)


def _channels(env: TrainingEnv, hp: dict[str, Any]) -> tuple[ChannelData, ChannelData | None]:
    train_channel = env.channel("train")
    share = _host_share(env, train_channel.config)
    train_data = ChannelData(train_channel, hp["feature_dim"], hp["predictor_type"], share)
    test_channel = env.channel("test", required=False)
    test_data = ChannelData(test_channel, hp["feature_dim"], hp["predictor_type"]) if test_channel else None
    for data in filter(None, (train_data, test_data)):
        data.check_files()
    return train_data, test_data


def _train(env: TrainingEnv, hp: dict[str, Any], train_data: ChannelData, test_data: ChannelData | None) -> None:
    reducer = dist.reducer_for(env, hp["feature_dim"], hp["num_factors"])
    try:
        _fit(env, hp, FMTrainer(hp, reducer), train_data, test_data)
    finally:
        if reducer is not None:
            reducer.close()  # while the ps-lite scheduler and servers still run


def _fit(
    env: TrainingEnv, hp: dict[str, Any], trainer: FMTrainer, train_data: ChannelData, test_data: ChannelData | None
) -> None:
    reducer = trainer.reducer
    first_epoch = _resume(trainer, env.checkpoint_dir / CHECKPOINT_NAME)
    batch_size = hp["mini_batch_size"]
    interrupt.cooperate()
    metrics: dict[str, Any] = {}
    for epoch in range(first_epoch, hp["epochs"]):
        started, total_loss, examples = time.perf_counter(), 0.0, 0
        # Pipe mode: this job's n-th pass reads FIFO train_<n> (a resumed job starts again at train_0).
        batches = train_data.batches(epoch - first_epoch, batch_size, seed=epoch)
        while True:
            batch = next(batches, None)
            if reducer is None:
                if batch is None:
                    break
                total_loss += trainer.step(batch)
            else:  # every host steps until none has a batch left: dist_sync needs the same number of steps
                loss, everyone = trainer.synced_step(batch)
                if everyone == 0:
                    break
                total_loss += loss
            examples += len(batch) if batch is not None else 0
            if interrupt.requested():
                _checkpoint(trainer, env, epoch)
                log.info("SIGTERM: checkpoint saved in epoch %d", epoch)
                return
        seconds = time.perf_counter() - started
        read = train_data.last
        log.info(
            "epoch %d: %d records read from channel 'train', %d trained on this host (%d non-zeros) in %.1f s",
            epoch,
            read.records,
            read.local,
            read.nnz,
            seconds,
        )
        print(
            f"#throughput_metric: host={env.current_host}, train throughput={examples / seconds:.1f} records/second",
            flush=True,
        )
        metrics["train:throughput"] = examples / seconds
        metrics["train:records"] = examples
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
        scores, labels = evaluate_channel(model, test_data)
        log.info("test: %d records", len(labels))
        test_metrics = scoring.compute(hp["predictor_type"], scores, labels)
        metrics.update(scoring.report(test_metrics, "test", env.current_host))
    metrics["epochs"] = hp["epochs"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    log.info("peak memory of the training process: %.0f MiB (max RSS)", peak)
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
