"""Training of the DSSM content model (model=dssm; the seed course's Lab 3-2) in MXNet Gluon.

Each liked rating (>= `positive_rating`) is a positive pair; `negatives` items drawn at random from the
whole catalogue (rated or not) are its negatives. The loss is DSSM's: softmax over gamma x cosine(user, item)
of the positive and its negatives, the positive the right class. The trained weights go to dssm.DssmModel,
which serves them in numpy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from byoc_runtime import interrupt
from byoc_runtime.metrics import log_metric

from . import checkpoints
from .dssm import Towers, item_weights


@dataclass(frozen=True)
class DssmConfig:
    dim: int  # word and user id embedding size
    layers: list[int]  # each tower's MLP widths; the last is the vector size
    negatives: int
    gamma: float
    user_id_dropout: float
    epochs: int
    batch_size: int
    learning_rate: float
    wd: float
    seed: int
    checkpoint_dir: Path | None = None


@dataclass
class DssmResult:
    towers: Towers | None
    history: list[dict]
    epochs_done: int
    interrupted: bool = False
    resumed_from: int | None = None


class _SparseBag(autograd.Function):
    """rows (csr: weights over words) x word embeddings. MXNet's Embedding + broadcast multiply + sum took
    ~200 ms a batch to differentiate on CPU (its broadcast backward); a CSR product each way takes ~10."""

    def __init__(self, rows):
        super().__init__()
        self.rows = rows

    def forward(self, words):
        return nd.sparse.dot(self.rows, words)

    def backward(self, grad):
        return nd.sparse.dot(self.rows, grad, transpose_a=True).tostype("default")


class _CsrRows:
    """Padded token rows and their weights, kept as CSR so a batch's rows become one csr_matrix."""

    def __init__(self, tokens: np.ndarray, weights: np.ndarray, columns: int, ctx: mx.Context):
        keep = tokens > 0
        self.counts = keep.sum(axis=1)
        self.indptr = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.indices, self.data = tokens[keep].astype(np.int64), weights[keep].astype(np.float32)
        self.columns, self.ctx = columns, ctx

    def take(self, rows: np.ndarray):
        counts = self.counts[rows]
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        within = np.arange(indptr[-1]) - np.repeat(indptr[:-1], counts)
        picked = np.repeat(self.indptr[rows], counts) + within
        return nd.sparse.csr_matrix(
            (self.data[picked], self.indices[picked], indptr), shape=(len(rows), self.columns), ctx=self.ctx
        )


class _Net(gluon.Block):
    def __init__(self, vocabulary: int, users: int, config: DssmConfig, image_size: int | None = None):
        super().__init__()
        with self.name_scope():
            self.image = None
            if image_size:  # standardised image numbers -> dim, added to the item's bag of words
                self.image = gluon.nn.Dense(config.dim, use_bias=False, flatten=False, in_units=image_size)
            self.words = self.params.get("words", shape=(vocabulary, config.dim), init=mx.init.Normal(0.1))
            self.user_ids = gluon.nn.Embedding(users, config.dim, weight_initializer=mx.init.Normal(0.1))
            self.item_mlp, self.user_mlp = gluon.nn.Sequential(), gluon.nn.Sequential()
            for mlp in (self.item_mlp, self.user_mlp):
                for number, units in enumerate(config.layers):
                    last = number == len(config.layers) - 1
                    mlp.add(gluon.nn.Dense(units, activation=None if last else "relu", flatten=False))

    def forward(self, users, profile_rows, keep, item_rows, item_images=None):
        """Cosines (batch, 1 + negatives): item_rows (csr) holds each user's positive then its negatives."""
        words = self.words.data(users.context)
        bag = _SparseBag(profile_rows)(words)
        user = nd.L2Normalization(self.user_mlp(nd.concat(self.user_ids(users) * keep, bag, dim=1)))
        item_bag = _SparseBag(item_rows)(words)
        if self.image is not None:
            item_bag = item_bag + self.image(item_images)
        items = nd.L2Normalization(self.item_mlp(item_bag))
        items = items.reshape((len(users), -1, user.shape[1]))
        return nd.batch_dot(items, user.expand_dims(2)).reshape((len(users), -1))

    def towers(self) -> Towers:
        def layers(mlp) -> list[tuple[np.ndarray, np.ndarray]]:
            return [(block.weight.data().asnumpy().T.copy(), block.bias.data().asnumpy()) for block in mlp]

        words = self.words.data().asnumpy().copy()
        words[0] = 0.0  # padding
        towers = Towers(words, self.user_ids.weight.data().asnumpy(), layers(self.item_mlp), layers(self.user_mlp))
        if self.image is not None:
            towers.image_projection = self.image.weight.data().asnumpy().T.copy()
        return towers


def fit(
    config: DssmConfig,
    item_tokens: np.ndarray,
    item_images: np.ndarray | None,
    profile_tokens: np.ndarray,
    profile_weights: np.ndarray,
    positive_users: np.ndarray,
    positive_items: np.ndarray,
    vocabulary_size: int,
    ctx: mx.Context,
    evaluate: Callable[[Towers], dict[str, float]] | None = None,
    signature: dict | None = None,
    write_checkpoints: bool = True,
) -> DssmResult:
    """Train on the positive (user index, catalogue row) pairs; `item_images` (catalogue rows x numbers,
    standardised, zero rows for items without one) feed the image tower when given. `evaluate(towers)` after
    each epoch returns metrics to log. Checkpoints every epoch and resumes from the newest one written for the
    same signature; a SIGTERM saves one after the current batch and returns with `interrupted` set."""
    mx.random.seed(config.seed)
    num_users, num_items = len(profile_tokens), len(item_tokens)
    net = _Net(vocabulary_size, num_users, config, None if item_images is None else item_images.shape[1])
    net.initialize(mx.init.Xavier(), ctx=ctx)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": config.learning_rate, "wd": config.wd})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    item_bags = _CsrRows(item_tokens, item_weights(item_tokens), vocabulary_size, ctx)
    profile_bags = _CsrRows(profile_tokens, profile_weights, vocabulary_size, ctx)
    history: list[dict] = []
    start_epoch, resumed_from = 0, None
    signature = signature or {}
    if config.checkpoint_dir is not None:

        def restore(found: checkpoints.Checkpoint) -> None:
            first = np.zeros(1, np.int64)
            images = None if item_images is None else nd.array(item_images[first], ctx=ctx)
            net(nd.zeros(1, ctx=ctx), profile_bags.take(first), nd.ones((1, 1), ctx=ctx), item_bags.take(first), images)
            net.load_parameters(str(found.params), ctx=ctx)
            if found.states is not None:
                trainer.load_states(str(found.states))

        found = checkpoints.find(config.checkpoint_dir, signature, restore)
        if found is not None:
            start_epoch = resumed_from = found.epoch
            history = list(found.history)
            print(f"resuming the DSSM from its checkpoint at epoch {found.epoch}", flush=True)
    batch = config.batch_size
    for epoch in range(start_epoch, config.epochs):
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(len(positive_users))
        negatives = rng.integers(0, num_items, (len(order), config.negatives))
        keep = (rng.random(len(order)) >= config.user_id_dropout).astype(np.float32)
        started, loss_sum, seen = time.perf_counter(), nd.zeros(1, ctx=ctx), 0
        for first in range(0, len(order), batch):
            if interrupt.requested():
                if write_checkpoints and config.checkpoint_dir is not None:
                    checkpoints.save(config.checkpoint_dir, net, trainer, epoch, signature, history, True)
                print(f"SIGTERM: DSSM checkpoint saved at epoch {epoch}", flush=True)
                return DssmResult(None, history, epoch, interrupted=True, resumed_from=resumed_from)
            rows = order[first : first + batch]
            candidates = np.concatenate([positive_items[rows, None], negatives[first : first + len(rows)]], axis=1)
            with autograd.record():
                cosines = net(
                    nd.array(positive_users[rows], ctx=ctx),
                    profile_bags.take(positive_users[rows]),
                    nd.array(keep[first : first + len(rows), None], ctx=ctx),
                    item_bags.take(candidates.ravel()),
                    None if item_images is None else nd.array(item_images[candidates.ravel()], ctx=ctx),
                )
                loss = loss_fn(cosines * config.gamma, nd.zeros(len(rows), ctx=ctx))
            loss.backward()
            trainer.step(len(rows))
            loss_sum += loss.sum()
            seen += len(rows)
        record = {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum.asscalar()) / max(seen, 1),
            "pairs_per_second": seen / (time.perf_counter() - started),
        }
        if evaluate is not None:
            record.update(evaluate(net.towers()))
        for name, value in record.items():
            if name != "epoch":
                log_metric(name, float(value), epoch=epoch + 1)
        history.append(record)
        if write_checkpoints and config.checkpoint_dir is not None:
            checkpoints.save(config.checkpoint_dir, net, trainer, epoch + 1, signature, history, True)
    return DssmResult(net.towers(), history, config.epochs, resumed_from=resumed_from)
