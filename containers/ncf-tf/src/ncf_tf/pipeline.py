"""The training input: one tf.data pipeline per epoch over freshly sampled negatives (the paper resamples them
every epoch). Examples are shuffled as index arrays in numpy, then sliced into batches by tf.data in C++; no
Python generator and no one-hot vectors anywhere."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .model import ITEM_INPUT, USER_INPUT
from .prep import Interactions, users_with_unrated_items, with_negatives


class EpochSampler:
    """Positives + num_neg negatives per positive, reshuffled each epoch. Deterministic in (seed, epoch), so
    every worker of a multi-worker job builds the same global stream and tf.distribute shards it."""

    def __init__(self, data: Interactions, num_neg: int, seed: int):
        self.known = data.known_keys()
        mask = users_with_unrated_items(data, self.known)
        self.users, self.items = data.train_users[mask], data.train_items[mask]
        self.n_items, self.num_neg, self.seed = data.n_items, num_neg, seed

    def __len__(self) -> int:
        return len(self.users) * (1 + self.num_neg)

    def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        users, items, labels = with_negatives(self.users, self.items, self.num_neg, self.n_items, self.known, rng)
        order = rng.permutation(len(users))
        return users[order], items[order], labels[order]


def dataset(users: np.ndarray, items: np.ndarray, labels: np.ndarray, batch_size: int,
            drop_remainder: bool = False, shard: tuple[int, int] | None = None) -> tf.data.Dataset:
    """drop_remainder for multi-worker jobs: a short last batch splits unevenly across workers, and the
    all-gather of the embeddings' sparse gradients needs equal shapes on every worker. shard=(count, index):
    this worker's share of the examples (parameter-server training, where workers read independently)."""
    ds = tf.data.Dataset.from_tensor_slices(({USER_INPUT: users, ITEM_INPUT: items}, labels))
    if shard is not None:
        ds = ds.shard(*shard)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Every worker holds the whole (identical) stream: shard by batch, not by file.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
