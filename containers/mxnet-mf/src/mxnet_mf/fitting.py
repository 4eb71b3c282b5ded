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
import math
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
    fast_mf: bool = False  # model mf with adam on one CPU: _FastMF's hand-written gradients (train.py: large data)


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

    # Data on the device (several GPUs: on the CPU, split per batch).
    home = ctx[0] if len(ctx) == 1 else mx.cpu()
    columns = (
        nd.array(users, ctx=home, dtype="int32"),
        nd.array(items, ctx=home, dtype="int32"),
        nd.array(ratings, ctx=home, dtype="float32"),
    )
    trained_samples, trained_seconds = 0, 0.0
    fast = (
        _FastMF(net, config, users, items, ratings, num_users, num_items, ctx[0])
        if uses_fast_mf(config, distributed, ctx)
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


CSR_ELEMENTS = 2**31 - 1  # rows x columns MXNet accepts in one sparse matrix (no USE_INT64_TENSOR_SIZE)


class _FastMF:
    """model=mf on one CPU host, for large data (train.py chooses it): the same objective, gradients and lazy
    Adam as the autograd loop, computed by hand in a few array operations per batch instead of the autograd
    graph's chain of elementwise ops (most of its time on 1M ratings, profiled).

    Users' and items' rows live in one matrix W: user u's row is [p_u, b_u, 1], item i's (row num_users + i) is
    [q_i, 1, b_i], so <W_u, W_i> = <p_u, q_i> + b_u + b_i. Each batch's ratings are grouped, once before the
    first epoch, into one CSR matrix over W's rows: a user's row holds the errors of its ratings at its items'
    columns and l2 x its count at its own column (the per-rating L2), an item's row likewise. CSR . W is then
    the whole batch's gradient, every touched row once, for MXNet's lazy Adam as a row_sparse gradient: per
    batch two gathers, a product, one sparse product and one update. Batches are a fixed random partition of
    the ratings, taken in a new random order each epoch (the autograd loop reshuffles the ratings themselves).
    Checkpoints hold the weights; a resumed job starts Adam's moments afresh.
    """

    def __init__(self, net, config: FitConfig, users, items, ratings, num_users: int, num_items: int, ctx):
        k = config.num_factors
        self.net, self.config, self.ctx, self.k, self.num_users = net, config, ctx, k, num_users
        self.width, self.rows = k + 2, num_users + num_items
        order = np.random.default_rng(config.seed).permutation(len(ratings))
        self.batches = []
        for start in range(0, len(ratings), config.batch_size):
            rows = order[start : start + config.batch_size]
            rows = rows[np.argsort(users[rows] * num_items + items[rows])]  # by user, then item
            self.batches.append(self._batch(users[rows], items[rows], ratings[rows]))
        one_u, one_i = nd.ones((num_users, 1), ctx=ctx), nd.ones((num_items, 1), ctx=ctx)
        user_rows = nd.concat(net.user_embedding.weight.data(), net.user_bias.weight.data(), one_u, dim=1)
        item_rows = nd.concat(net.item_embedding.weight.data(), one_i, net.item_bias.weight.data(), dim=1)
        self.w = nd.concat(user_rows, item_rows, dim=0)
        self.mu = net.global_bias.data()
        self.states = [(nd.zeros_like(a), nd.zeros_like(a)) for a in (self.w, self.mu)]
        self.ones = nd.ones((self.width, 1), ctx=ctx)
        self.steps = 0

    def _batch(self, u: np.ndarray, i: np.ndarray, r: np.ndarray) -> dict:
        """One batch's arrays; u, i, r grouped by user (then item)."""
        size, nu, l2 = len(r), self.num_users, self.config.l2
        first_u = np.flatnonzero(np.diff(u, prepend=-1))  # u is sorted: where each user's run starts
        row_u, count_u = u[first_u], np.diff(np.append(first_u, size))
        per_item = np.argsort(i, kind="stable")  # by item, then user
        sorted_i = i[per_item]
        first_i = np.flatnonzero(np.diff(sorted_i, prepend=-1))
        row_i, count_i = sorted_i[first_i], np.diff(np.append(first_i, size))
        # CSR rows: the batch's users, then its items; columns ascending within a row.
        # A user's row: its own column (the L2 term) then its items'; an item's: its users' then its own.
        # Values come from [errors (size), l2 x user counts, l2 x item counts] through `source`.
        n_u, n_i = len(row_u), len(row_i)
        lengths = np.concatenate([count_u + 1, count_i + 1])
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        columns = np.empty(indptr[-1], dtype=np.int64)
        source = np.empty(indptr[-1], dtype=np.int64)
        user_starts = indptr[:n_u]
        columns[user_starts], source[user_starts] = row_u, size + np.arange(n_u)
        rest = np.ones(indptr[-1], dtype=bool)
        rest[user_starts] = False
        item_ends = indptr[n_u + 1 :] - 1
        columns[item_ends], source[item_ends] = nu + row_i, size + n_u + np.arange(n_i)
        rest[item_ends] = False
        slots = np.flatnonzero(rest)
        columns[slots[:size]], source[slots[:size]] = nu + i, np.arange(size)
        columns[slots[size:]], source[slots[size:]] = u[per_item], per_item
        ctx = self.ctx
        return {
            "u": nd.array(u, ctx=ctx, dtype="int32"),
            "i": nd.array(nu + i, ctx=ctx, dtype="int32"),
            "r": nd.array(r, ctx=ctx, dtype="float32"),
            "l2": nd.array(l2 * np.concatenate([count_u, count_i]), ctx=ctx, dtype="float32"),
            "source": nd.array(source, ctx=ctx, dtype="int32"),
            "columns": nd.array(columns, ctx=ctx, dtype="int64"),
            "chunks": self._chunks(indptr),
            "rows": nd.array(np.concatenate([row_u, nu + row_i]), ctx=ctx, dtype="int64"),
            "size": size,
        }

    def _chunks(self, indptr: np.ndarray) -> list[tuple[int, int, int, int, Any]]:
        """The CSR's rows in runs of at most 2^31 / columns: MXNet (built without int64 tensor sizes) refuses a
        sparse matrix whose rows x columns reach 2^31, as 44,000 touched rows of 80,000 do at 10M ratings.
        (first row, end row, first value, end value, that run's indptr)."""
        per_chunk = max(1, CSR_ELEMENTS // self.rows - 1)
        chunks = []
        for first in range(0, len(indptr) - 1, per_chunk):
            last = min(first + per_chunk, len(indptr) - 1)
            local = indptr[first : last + 1] - indptr[first]
            start, end = int(indptr[first]), int(indptr[last])
            chunks.append((first, last, start, end, nd.array(local, ctx=self.ctx, dtype="int64")))
        return chunks

    def epoch(self, epoch: int) -> tuple[int, Any]:
        """One pass over the ratings: (ratings seen, the summed squared error as a (1,) NDArray)."""
        config, width, k, nu = self.config, self.width, self.k, self.num_users
        squared_error, seen = nd.zeros(1, ctx=self.ctx), 0
        for number in np.random.default_rng(config.seed + epoch).permutation(len(self.batches)):
            b = self.batches[number]
            size, rows = b["size"], b["rows"]
            pu = nd.Embedding(b["u"], self.w, input_dim=self.rows, output_dim=width)
            qi = nd.Embedding(b["i"], self.w, input_dim=self.rows, output_dim=width)
            error = nd.broadcast_add(nd.dot(nd.elemwise_mul(pu, qi), self.ones).reshape((-1,)), self.mu) - b["r"]
            squared_error += nd.dot(error, error)
            values = nd.take(nd.concat(error, b["l2"], dim=0), b["source"])
            parts = []
            for first, last, start, end, indptr in b["chunks"]:
                csr = nd.sparse.csr_matrix(
                    (values[start:end], b["columns"][start:end], indptr), shape=(last - first, self.rows)
                )
                parts.append(nd.sparse.dot(csr, self.w))
            summed = parts[0] if len(parts) == 1 else nd.concat(*parts, dim=0)
            grad = nd.sparse.row_sparse_array((summed, rows), shape=self.w.shape, ctx=self.ctx)
            self.steps += 1
            t = self.steps
            settings = {
                "lr": config.learning_rate * math.sqrt(1 - 0.999**t) / (1 - 0.9**t),
                "wd": config.wd,
                "rescale_grad": 2.0 / size,  # d/dx of the squared error and the L2 term: 2x; the batch's mean
                "beta1": 0.9,
                "beta2": 0.999,
                "epsilon": 1e-8,
            }
            (mean, var), (mean_mu, var_mu) = self.states
            nd.adam_update(self.w, grad, mean, var, out=self.w, lazy_update=True, **settings)
            nd.adam_update(self.mu, nd.sum(error).reshape((1,)), mean_mu, var_mu, out=self.mu, **settings)
            self.w[:nu, k + 1] = 1.0  # the constant columns, moved by the update, back to 1
            self.w[nu:, k] = 1.0
            seen += size
            if interrupt.requested():
                break
        self.write_back()
        return seen, squared_error

    def write_back(self) -> None:
        """The trained rows into the network's parameters (evaluation, checkpoints and export read those)."""
        k, nu, net = self.k, self.num_users, self.net
        net.user_embedding.weight.set_data(self.w[:nu, :k])
        net.user_bias.weight.set_data(self.w[:nu, k : k + 1])
        net.item_embedding.weight.set_data(self.w[nu:, :k])
        net.item_bias.weight.set_data(self.w[nu:, k + 1 :])


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
