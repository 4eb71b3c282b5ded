"""I-AutoRec (Sedhain et al., 2015), the second member of model=mf's default ensemble.

Each item is its column of the rating matrix (one entry per user, 0 where unrated); an encoder turns it
into a code, h_i = sigmoid(V^T r_i + b), and a decoder reads the user's rating back from it,
r_ui = <h_i, w_u> + c_u, trained on the observed ratings only, with L2 on V and W. The decoder is a dot
product plus a user bias: the trained net is a biased MF whose item factors are the codes, so it folds into
the served model as extra factors (ensemble.blend) and serving stays two matrix products.

Why it is there: it learns from the whole co-rating pattern of an item rather than one row per id, so its
errors differ from MF's; on ML-100K's five splits the 50/50 average of the two has 0.015 less RMSE than MF
alone (README, "Quality"). Every host of a multi-host job trains it on all the ratings, with the same seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from byoc_runtime import interrupt
from byoc_runtime.metrics import log_metric

from .ensemble import AutoRecModel


@dataclass(frozen=True)
class AutoRecConfig:
    units: int  # code size
    epochs: int
    learning_rate: float
    l2: float  # lambda/2 (||V||^2 + ||W||^2) per pass over the items
    batch_items: int = 64
    seed: int = 0


class _Net(gluon.Block):
    def __init__(self, num_users: int, units: int):
        super().__init__()
        with self.name_scope():
            self.encoder = self.params.get("encoder", shape=(num_users, units), init=mx.init.Normal(num_users**-0.5))
            self.code_bias = self.params.get("code_bias", shape=(units,), init="zeros")
            self.decoder = self.params.get("decoder", shape=(num_users, units), init=mx.init.Normal(units**-0.5))
            self.user_bias = self.params.get("user_bias", shape=(num_users,), init="zeros")

    def codes(self, columns):
        """(batch, num_users) rating columns -> (batch, units)."""
        return nd.sigmoid(nd.dot(columns, self.encoder.data(columns.context)) + self.code_bias.data(columns.context))

    def forward(self, columns):
        """Every user's rating of the batch's items, (batch, num_users): dense, because MXNet's CPU `take`
        backward (the observed entries only) took 10x as long as the whole dense product on ML-100K."""
        ctx = columns.context
        decoded = nd.dot(self.codes(columns), self.decoder.data(ctx), transpose_b=True)
        return nd.broadcast_add(decoded, nd.reshape(self.user_bias.data(ctx), (1, -1)))


def fit(
    config: AutoRecConfig,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    num_users: int,
    num_items: int,
    ctx: mx.Context,
    evaluate: Callable[[AutoRecModel], dict[str, float]] | None = None,
    best_by: str | None = None,
    patience: int = 10,
) -> AutoRecModel:
    """Train on the ratings (user index, item index, rating); `evaluate(model)` after each epoch returns
    metrics to log. With `best_by` (one of those metrics, lower is better) the epoch with its lowest value is
    returned, and training stops when it has not fallen for `patience` epochs. A SIGTERM ends it after the
    current batch with `interrupted` set."""
    mx.random.seed(config.seed)
    rng = np.random.default_rng(config.seed)
    by_item = np.argsort(items, kind="stable")
    item_users, item_ratings = users[by_item].astype(np.int64), ratings[by_item].astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(items, minlength=num_items))])

    net = _Net(num_users, config.units)
    net.initialize(ctx=ctx)
    # The L2 as the optimizer's weight decay (d/dW of l2/2 ||W||^2, spread over the epoch's batches): a loss
    # term sum(W**2) made each step 5x slower on MXNet's CPU.
    net.code_bias.wd_mult = net.user_bias.wd_mult = 0.0
    wd = config.l2 * min(config.batch_items, num_items) / num_items
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": config.learning_rate, "wd": wd})
    model = AutoRecModel(np.zeros((num_items, config.units), np.float32), np.zeros((num_users, 0)), np.zeros(0))
    best, best_value = None, float("inf")
    started = time.time()
    for epoch in range(config.epochs):
        order = rng.permutation(num_items)
        squared, count = nd.zeros((1,), ctx=ctx), 0
        for start in range(0, num_items, config.batch_items):
            batch = order[start : start + config.batch_items]
            columns, observed = _batch(batch, indptr, item_users, item_ratings, num_users)
            if not observed.any():
                continue
            columns, mask = nd.array(columns, ctx=ctx), nd.array(observed, ctx=ctx)
            with autograd.record():
                error = (net(columns) - columns) * mask  # the loss is on the observed ratings only
                loss = nd.sum(nd.square(error))
            loss.backward()
            trainer.step(1)
            squared += loss.detach()
            count += int(observed.sum())
            if interrupt.requested():
                model.interrupted = True
                return model
        record = {"autorec_train_rmse": float(np.sqrt(squared.asscalar() / max(count, 1)))}
        if evaluate is not None or best_by is not None or epoch + 1 == config.epochs:
            # every item's code: needed to evaluate (or keep) this epoch's net, else only after the last
            model = _export(net, indptr, item_users, item_ratings, num_users, num_items, ctx, config.batch_items)
        model.epochs_done = epoch + 1
        if evaluate is not None:
            record.update(evaluate(model))
        for name, value in record.items():
            log_metric(name, value, autorec_epoch=epoch + 1)
        if best_by is None:
            continue
        if record[best_by] < best_value:
            best, best_value = model, record[best_by]
        elif model.epochs_done - best.epochs_done >= patience:
            break
    print(
        f"I-AutoRec: {model.epochs_done} epochs in {time.time() - started:.1f} s"
        + (f"; keeping epoch {best.epochs_done} ({best_by} {best_value:.4f})" if best is not None else ""),
        flush=True,
    )
    return best if best is not None else model


def _batch(batch, indptr, item_users, item_ratings, num_users):
    """Dense rating columns of the batch's items, (batch, num_users), and where they hold a rating."""
    lengths = indptr[batch + 1] - indptr[batch]
    rows = np.repeat(np.arange(len(batch)), lengths)
    # positions of each item's ratings in the item-sorted arrays, concatenated
    positions = np.repeat(indptr[batch] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(
        lengths.sum()
    )
    batch_users, targets = item_users[positions], item_ratings[positions]
    columns = np.zeros((len(batch), num_users), np.float32)
    columns[rows, batch_users] = targets
    observed = np.zeros_like(columns)
    observed[rows, batch_users] = 1.0
    return columns, observed


def _export(net, indptr, item_users, item_ratings, num_users, num_items, ctx, batch_items) -> AutoRecModel:
    """Every item's code from its full column (an item without ratings gets the code of an empty column)."""
    codes = np.empty((num_items, net.code_bias.shape[0]), np.float32)
    for start in range(0, num_items, batch_items * 4):
        batch = np.arange(start, min(start + batch_items * 4, num_items))
        columns = _batch(batch, indptr, item_users, item_ratings, num_users)[0]
        codes[batch] = net.codes(nd.array(columns, ctx=ctx)).asnumpy()
    return AutoRecModel(codes, net.decoder.data(ctx).asnumpy(), net.user_bias.data(ctx).asnumpy())
