"""The MXNet training loop: fast where the course's loop is slow, with checkpoints, SIGTERM and kvstores.

What makes it fast (bench/mxnet_mf.py measures it against the course's loop): the rating columns live
on the device as NDArrays and each epoch is shuffled with one `take`, so a batch is a slice, not a
DataLoader batchify in Python; the network is hybridized with static memory; the squared error is summed on
the device and read back once per epoch instead of an `asnumpy()` sync per batch (train_rmse is that running
figure over the epoch's batches, as Keras reports it: a second pass over the data to score the final weights
cost 15-20% of a deep epoch).
Import this module only after the ps-lite roles are set up (distributed.start_mxnet_parameter_servers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from byoc_runtime import atomic, interrupt
from byoc_runtime.metrics import log_metric

from . import checkpoints, networks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    model: str
    num_factors: int
    hidden_units: list[int]
    dropout: float
    epochs: int
    batch_size: int  # per host; the global mini-batch is batch_size * num_workers
    learning_rate: float
    wd: float
    optimizer: str
    seed: int
    kvstore: str  # local | device | dist_sync | dist_device_sync | dist_async
    l2: float = 0.0  # per-rating L2 on the embedding rows a batch touches
    num_gpus: int = 0
    checkpoint_dir: Path | None = None
    write_checkpoints: bool = True  # the master only, in a multi-host job
    object2vec: dict[str, Any] | None = None  # model object2vec: object2vec.network_settings
    early_stopping: tuple[int, float] | None = None  # (patience, tolerance) on the validation loss
    fast_mf: bool = False  # model mf with adam on one CPU: _FastMF, mf_kernel's compiled step (train.py: large data)


def core_lr_mult(batch_size: int) -> float:
    """Object2Vec's core: a token's row takes one (lazy) Adam step per batch it is in, and a larger batch means
    fewer steps per epoch; at the course's 2,048 the rows barely moved before early stopping ended the job.
    sqrt(batch / 128), at least 1: 64 -> 1, 2048 -> 4 (ML-100K: accuracy 0.680 at x1 against 0.714 at x4)."""
    return max(1.0, (batch_size / 128) ** 0.5)


def classes(config: FitConfig) -> int:
    """1 for a regression (squared error), else the softmax's number of classes."""
    return config.object2vec["num_classes"] if config.object2vec else 1


@dataclass
class FitResult:
    net: Any
    epochs_done: int
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    samples_per_second: float = 0.0
    resumed_from: int | None = None
    best_epoch: int | None = None  # early stopping: the epoch whose weights the net holds at the end
    stopped_early: bool = False


def contexts(num_gpus: int) -> list[mx.Context]:
    return [mx.gpu(i) for i in range(num_gpus)] if num_gpus > 0 else [mx.cpu()]


def optimizer_params(config: FitConfig) -> dict[str, float]:
    params = {"learning_rate": config.learning_rate, "wd": config.wd}
    if config.optimizer in ("sgd", "nag"):
        params["momentum"] = 0.9
    return params


def fit(
    config: FitConfig,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    num_users: int,
    num_items: int,
    global_mean: float,
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    signature: dict[str, Any] | None = None,
) -> FitResult:
    """Train on this host's rows; `evaluate(net)` after each epoch returns metrics to log (validation)."""
    mx.random.seed(config.seed)
    np.random.seed(config.seed)
    ctx = contexts(config.num_gpus)
    distributed = config.kvstore.startswith("dist")
    sparse_grad = not distributed and len(ctx) == 1
    if config.object2vec:
        net = networks.build_object2vec(config.object2vec, num_users, num_items, global_mean, sparse_grad)
    else:
        net = networks.build(
            config.model,
            num_users,
            num_items,
            config.num_factors,
            config.hidden_units,
            config.dropout,
            global_mean,
            sparse_grad=sparse_grad,
        )
    net.initialize(ctx=ctx)
    if config.object2vec:
        for param in net.core_parameters():
            param.lr_mult = core_lr_mult(config.batch_size)
    objective = _Objective(net, config.l2, classes(config) > 1)
    train_metric = "train_cross_entropy" if classes(config) > 1 else "train_rmse"
    stopper = _EarlyStopping(*config.early_stopping, classes(config) > 1) if config.early_stopping else None
    objective.hybridize(static_alloc=True, static_shape=True)
    kvstore = mx.kv.create(config.kvstore) if distributed or len(ctx) > 1 else config.kvstore
    workers = kvstore.num_workers if distributed else 1
    trainer = gluon.Trainer(net.collect_params(), config.optimizer, optimizer_params(config), kvstore=kvstore)

    result = FitResult(net, 0)
    signature = signature or {}

    def restore(found: checkpoints.Checkpoint) -> None:
        net.load_parameters(str(found.params), ctx=ctx)
        if found.states is not None and not distributed:
            trainer.load_states(str(found.states))

    found = checkpoints.find(config.checkpoint_dir, signature, restore) if config.checkpoint_dir else None
    if found is not None and found.epoch > 0:
        result.epochs_done, result.history, result.resumed_from = found.epoch, list(found.history), found.epoch
        print(f"resuming from checkpoint at epoch {found.epoch}", flush=True)
        if stopper is not None:
            stopper.replay(result.history, net)

    trained_samples, trained_seconds = 0, 0.0
    fast = (
        _FastMF(net, config, users, items, ratings, num_users, num_items, ctx[0])
        if uses_fast_mf(config, distributed, ctx)
        else None
    )
    # Data on the device (several GPUs: on the CPU, split per batch); the fast loop keeps its own copy.
    home = ctx[0] if len(ctx) == 1 else mx.cpu()
    columns = (
        (
            nd.array(users, ctx=home, dtype="int32"),
            nd.array(items, ctx=home, dtype="int32"),
            nd.array(ratings, ctx=home, dtype="float32"),
        )
        if fast is None
        else None
    )
    for epoch in range(result.epochs_done, config.epochs):
        started = time.perf_counter()
        if fast is not None:
            seen, squared_error = fast.epoch(epoch)
        else:
            seen, squared_error = _epoch(config, objective, trainer, columns, ctx, home, workers, distributed, epoch)
        mean_loss = squared_error.asscalar() / max(seen, 1)
        train_value = None if interrupt.requested() else float(mean_loss if classes(config) > 1 else np.sqrt(mean_loss))
        seconds = time.perf_counter() - started
        trained_samples, trained_seconds = trained_samples + seen, trained_seconds + seconds
        if interrupt.requested():
            # Resume re-runs this epoch from the weights as they are now.
            _checkpoint(config, net, trainer, result.epochs_done, signature, result.history, distributed)
            print(f"SIGTERM: checkpoint saved after {result.epochs_done} epochs", flush=True)
            result.interrupted = True
            break
        record = {"epoch": epoch + 1, train_metric: train_value, "samples_per_second": seen / seconds}
        if evaluate is not None:
            record.update(evaluate(net))
        for name, value in record.items():
            if name != "epoch":
                log_metric(name, value, epoch=epoch + 1)
        result.history.append(record)
        result.epochs_done = epoch + 1
        _checkpoint(config, net, trainer, result.epochs_done, signature, result.history, distributed)
        if stopper is not None and stopper.update(record, net):
            print(
                f"early stopping after epoch {epoch + 1}: no validation loss decrease of {stopper.tolerance:g} "
                f"in {stopper.patience} epochs; keeping epoch {stopper.best_epoch}",
                flush=True,
            )
            result.stopped_early = True
            break
    if stopper is not None and stopper.best_epoch and not result.interrupted:
        stopper.restore(net)
        result.best_epoch = stopper.best_epoch
    result.samples_per_second = trained_samples / trained_seconds if trained_seconds else 0.0
    return result


def _epoch(config: FitConfig, objective, trainer, columns, ctx, home, workers: int, distributed: bool, epoch: int):
    """One pass of the autograd loop: (ratings seen, the summed error as a (1,) NDArray)."""
    count, batch = columns[2].shape[0], config.batch_size
    order = nd.array(np.random.default_rng(config.seed + epoch).permutation(count), ctx=home, dtype="int32")
    shuffled = [nd.take(column, order) for column in columns]
    seen, squared_error = 0, nd.zeros(1, ctx=ctx[0])
    # A dist kvstore fixes the batch size at the first step: every worker runs the same number of full
    # batches (shards are equal-sized) and drops the remainder, a different subset each epoch.
    stop = count - count % batch if distributed and count >= batch else count
    for start in range(0, stop, batch):
        parts = [column[start : start + batch] for column in shuffled]
        size = parts[0].shape[0]
        if len(ctx) > 1:
            per_ctx = list(zip(*[gluon.utils.split_and_load(p, ctx, even_split=False) for p in parts], strict=False))
        else:
            per_ctx = [parts]
        with autograd.record():
            outputs = [objective(u, i, r) for u, i, r in per_ctx]
        autograd.backward([loss for loss, _ in outputs])
        # Gradients are sums over the batch (and over workers on a dist kvstore): scale to the mean.
        trainer.step(size * workers)
        for _, batch_error in outputs:
            squared_error += batch_error.as_in_context(squared_error.context)
        seen += size
        if interrupt.requested():
            break
    return seen, squared_error


def uses_fast_mf(config: FitConfig, distributed: bool, ctx: list) -> bool:
    """Whether fit() takes _FastMF's loop (asked for by train.py for large data, and possible)."""
    only_cpu = len(ctx) == 1 and ctx[0].device_type == "cpu"
    plain = config.model == "mf" and config.object2vec is None and config.optimizer == "adam"
    return config.fast_mf and plain and only_cpu and not distributed


class _FastMF:
    """model=mf on one CPU host, for large data (train.py chooses it): the same objective, gradients and lazy
    Adam as the autograd loop, computed by mf_kernel's compiled step (numba, every core; numpy where numba is
    missing) on numpy copies of the rows instead of the autograd graph's chain of elementwise ops.

    Batches are a fixed random partition of the ratings (grouped by user and by item once, before the first
    epoch), taken in a new random order each epoch (the autograd loop reshuffles the ratings themselves).
    Checkpoints hold the weights; a resumed job starts Adam's moments afresh.
    """

    def __init__(self, net, config: FitConfig, users, items, ratings, num_users: int, num_items: int, ctx):
        from . import mf_kernel

        started = time.perf_counter()
        self.kernel, self.net, self.config, self.k = mf_kernel, net, config, config.num_factors
        self.steps = mf_kernel.steps()
        loaded = mf_kernel.load(self.steps)
        self.plan = mf_kernel.make_plan(users, items, ratings, num_users, num_items, config.batch_size, config.seed)
        P = np.concatenate([net.user_embedding.weight.data().asnumpy(), net.user_bias.weight.data().asnumpy()], 1)
        Q = np.concatenate([net.item_embedding.weight.data().asnumpy(), net.item_bias.weight.data().asnumpy()], 1)
        self.state = mf_kernel.State.start(P, Q, float(net.global_bias.data().asscalar()))
        print(
            f"mf kernel: {mf_kernel.describe(self.steps)}; loaded in {loaded:.2f} s, {self.plan.batches} batches "
            f"grouped, ready {time.perf_counter() - started:.2f} s after the start of the fit",
            flush=True,
        )

    def epoch(self, epoch: int) -> tuple[int, Any]:
        """One pass over the ratings: (ratings seen, the summed squared error as a (1,) NDArray)."""
        config = self.config
        seen, squared = self.kernel.run_epoch(
            self.state, self.plan, self.steps, epoch, config.seed, config.learning_rate, config.l2, config.wd,
            stop=interrupt.requested,
        )  # fmt: skip
        self.write_back()
        return seen, nd.array([squared], ctx=self.net.global_bias.data().context)

    def write_back(self) -> None:
        """The trained rows into the network's parameters (evaluation, checkpoints and export read those)."""
        k, net, state = self.k, self.net, self.state
        net.user_embedding.weight.set_data(nd.array(state.P[:, :k]))
        net.user_bias.weight.set_data(nd.array(state.P[:, k:]))
        net.item_embedding.weight.set_data(nd.array(state.Q[:, :k]))
        net.item_bias.weight.set_data(nd.array(state.Q[:, k:]))
        net.global_bias.set_data(nd.array(state.mu))


class _Objective(gluon.HybridBlock):
    """(loss per rating, the batch's summed error), inside the cached graph: one op per batch, not five.
    The error is the squared error (regression) or the cross-entropy of the label's class (softmax); the
    loss adds the per-rating L2 penalty; only it is back-propagated."""

    def __init__(self, net: gluon.HybridBlock, l2: float, softmax: bool = False):
        super().__init__()
        self.net, self.l2, self.softmax = net, l2, softmax

    def hybrid_forward(self, F, users, items, ratings):
        if self.softmax:
            error = -F.pick(F.log_softmax(self.net(users, items), axis=1), ratings, axis=1)
        else:
            error = F.square(self.net(users, items) - ratings)
        loss = error + self.l2 * self.net.penalty(F, users, items) if self.l2 else error
        return loss, F.sum(F.stop_gradient(error))


class _EarlyStopping:
    """Object2Vec's rule: stop when the validation loss (MSE, or cross-entropy for softmax) has not
    decreased by `tolerance` from the best for `patience` epochs; the best epoch's weights are kept."""

    def __init__(self, patience: int, tolerance: float, softmax: bool):
        self.patience, self.tolerance = patience, tolerance
        self.metric = "validation_cross_entropy" if softmax else "validation_mse"
        self.reference, self.waited = float("inf"), 0  # the loss an epoch must beat by `tolerance`
        self.best, self.best_epoch, self.weights = float("inf"), 0, None  # the lowest loss and its weights

    def update(self, record: dict, net) -> bool:
        """After an epoch: remember its weights if its loss is the lowest yet; True when training should stop."""
        loss = record.get(self.metric)
        if loss is None:
            return False
        if loss < self.best:
            self.best, self.best_epoch = loss, record["epoch"]
            self.weights = {name: p.data().copy() for name, p in net.collect_params().items()}
        if loss < self.reference - self.tolerance:
            self.reference, self.waited = loss, 0
            return False
        self.waited += 1
        return self.waited >= self.patience

    def replay(self, history: list[dict], net) -> None:
        """Resuming: the state the finished epochs left (their best weights are gone: the current ones stand in)."""
        for record in history:
            self.update(record, net)

    def restore(self, net) -> None:
        if self.weights is None:
            return
        for name, param in net.collect_params().items():
            param.set_data(self.weights[name])


def _checkpoint(config: FitConfig, net, trainer, epoch: int, signature, history, distributed: bool) -> None:
    if config.checkpoint_dir is None or not config.write_checkpoints:
        return
    try:
        checkpoints.save(config.checkpoint_dir, net, trainer, epoch, signature, history, with_states=not distributed)
    except OSError as err:  # a full or read-only checkpoint volume must not lose the training itself
        log.warning("could not write a checkpoint to %s: %s", config.checkpoint_dir, err)


def predict(net, users: np.ndarray, items: np.ndarray, batch: int = 65536) -> np.ndarray:
    """The network's own output (inference mode) for index pairs, for checking the exported model."""
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    out = []
    for start in range(0, len(users), batch):
        u = nd.array(users[start : start + batch], ctx=ctx, dtype="int32")
        i = nd.array(items[start : start + batch], ctx=ctx, dtype="int32")
        out.append(net(u, i).asnumpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def export_symbol(net, model_dir: Path, prefix: str = "mxnet_mf") -> None:
    """The network as MXNet's symbol JSON + params, for users who load it with SymbolBlock.imports. MXNet
    writes into a scratch directory; each file is then copied into model_dir atomically (a full disk is an
    OSError naming the file, not an MXNetError)."""
    with atomic.staged(model_dir) as scratch:
        net.export(str(scratch / prefix), epoch=0)
