"""Runs INSIDE the byoc-mxnet-mf image (bench/mxnet_mf.py starts it): training samples/s of our fitting
loop against the course's style of loop, side by side, on the same data, the same network sizes and the
same batch size; bench/mxnet_mf.py alternates the two so that a noisy neighbour slows both alike.

The course's loop (Labs 1 and 3): a Gluon DataLoader over an ArrayDataset, a non-hybridized Block, and
`nd.sum(loss).asscalar()` after every batch to accumulate the epoch's loss (a device sync per batch).

    python -m bench.mxnet_mf_loops DATA_DIR EPOCHS course|ours  -> a line 'RESULT {json}' on stdout

Each loop runs in its own process: ours with the engine our trainer picks on a CPU (MXNET_ENGINE_TYPE=
NaiveEngine), the course's with MXNet's default.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd
from mxnet.gluon import nn

from byoc_runtime.training_env import Channel
from mxnet_mf import fitting
from mxnet_mf.data import IdIndex, read_ratings


class CourseMF(gluon.Block):
    """The course's plain_net: user and item embeddings, their dot product."""

    def __init__(self, num_users, num_items, factors, hidden=None):
        super().__init__()
        with self.name_scope():
            self.user = nn.Embedding(num_users, factors)
            self.item = nn.Embedding(num_items, factors)
            self.hidden = None
            if hidden:
                self.hidden = nn.Sequential()
                for units in hidden:
                    self.hidden.add(nn.Dense(units, activation="relu"))
                self.hidden.add(nn.Dense(1))

    def forward(self, users, items):
        p, q = self.user(users), self.item(items)
        if self.hidden is None:
            return nd.sum(p * q, axis=1)
        return self.hidden(nd.concat(p, q, dim=1)).reshape((-1,))


def course_loop(users, items, ratings, num_users, num_items, model, batch, epochs) -> float:
    net = CourseMF(num_users, num_items, 64, [64, 32] if model == "deep" else None)
    net.initialize(mx.init.Normal(0.01))
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.002})
    loss_fn = gluon.loss.L2Loss()
    dataset = gluon.data.ArrayDataset(users.astype(np.float32), items.astype(np.float32), ratings)
    loader = gluon.data.DataLoader(dataset, batch_size=batch, shuffle=True)
    started = time.perf_counter()
    for _ in range(epochs):
        cumulative = 0.0
        for u, i, r in loader:
            with autograd.record():
                loss = loss_fn(net(u, i), r)
            loss.backward()
            trainer.step(u.shape[0])
            cumulative += nd.sum(loss).asscalar()
    return len(ratings) * epochs / (time.perf_counter() - started)


def our_loop(users, items, ratings, num_users, num_items, model, batch, epochs) -> float:
    config = fitting.FitConfig(
        model=model,
        num_factors=64,
        hidden_units=[64, 32],
        dropout=0.0,
        epochs=epochs,
        batch_size=batch,
        learning_rate=0.002,
        wd=0.0,
        optimizer="adam",
        seed=0,
        kvstore="local",
        l2=0.0,
        checkpoint_dir=None,
    )
    started = time.perf_counter()
    fitting.fit(config, users, items, ratings, num_users, num_items, float(ratings.mean()))
    return len(ratings) * epochs / (time.perf_counter() - started)


def main(data_dir: str, epochs: int, loop: str) -> None:
    table = read_ratings(Channel("train", Path(data_dir)))
    user_index, users = IdIndex.build(table.users)
    item_index, items = IdIndex.build(table.items)
    ratings = table.ratings
    run = {"course": course_loop, "ours": our_loop}[loop]
    results = {}
    for model in ("mf", "deep"):
        for batch in (256, 1024):
            results[f"{model}/{batch}"] = run(
                users, items, ratings, len(user_index), len(item_index), model, batch, epochs
            )
    # Our loop logs its metrics on stdout too: the result is the line that starts with RESULT.
    print("RESULT " + json.dumps({"ratings": len(ratings), "epochs": epochs, "results": results}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
