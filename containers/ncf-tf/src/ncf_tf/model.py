"""NeuMF (He et al. 2017): a GMF tower (element-wise product of user and item embeddings) and an MLP tower
(concatenated embeddings through ReLU layers), concatenated into one sigmoid output. GMF and MLP alone are the
towers with their own output, used for the paper's pre-training.

Inputs are integer indices named input_1 (user) and input_2 (item), the names the course's TF-Serving clients
send; embeddings are looked up by index (never one-hot). tf-keras, because Keras 3's fit does not run under
MultiWorkerMirroredStrategy.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

KINDS = ("gmf", "mlp", "neumf")
USER_INPUT, ITEM_INPUT = "input_1", "input_2"


def build(kind: str, n_users: int, n_items: int, factors: int, layers: list[int], dropout: float = 0.0) -> keras.Model:
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    user = keras.Input(shape=(), dtype="int32", name=USER_INPUT)
    item = keras.Input(shape=(), dtype="int32", name=ITEM_INPUT)

    def init():  # the paper's N(0, 0.01) embeddings; a fresh initializer per layer, or all would be equal
        return keras.initializers.RandomNormal(stddev=0.01)

    towers = []
    if kind in ("gmf", "neumf"):
        u = keras.layers.Embedding(n_users, factors, embeddings_initializer=init(), name="gmf_user")(user)
        i = keras.layers.Embedding(n_items, factors, embeddings_initializer=init(), name="gmf_item")(item)
        towers.append(keras.layers.Multiply(name="gmf_product")([u, i]))
    if kind in ("mlp", "neumf"):
        half = layers[0] // 2  # the first MLP layer is the concatenation of two embeddings
        u = keras.layers.Embedding(n_users, half, embeddings_initializer=init(), name="mlp_user")(user)
        i = keras.layers.Embedding(n_items, half, embeddings_initializer=init(), name="mlp_item")(item)
        x = keras.layers.Concatenate(name="mlp_concat")([u, i])
        for depth, width in enumerate(layers[1:], start=1):
            x = keras.layers.Dense(width, activation="relu", name=f"mlp_dense_{depth}")(x)
            if dropout > 0:
                x = keras.layers.Dropout(dropout, name=f"mlp_dropout_{depth}")(x)
        towers.append(x)
    joined = towers[0] if len(towers) == 1 else keras.layers.Concatenate(name="neumf_concat")(towers)
    output = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="lecun_uniform", name="prediction")(joined)
    return keras.Model(inputs={USER_INPUT: user, ITEM_INPUT: item}, outputs=output, name=kind)


def load_pretrained(neumf: keras.Model, gmf: keras.Model, mlp: keras.Model, alpha: float = 0.5) -> None:
    """The paper's initialisation: tower weights copied from the pre-trained models, the output layer the
    alpha-weighted concatenation of theirs."""
    for layer in neumf.layers:
        source = gmf if layer.name.startswith("gmf_") else mlp if layer.name.startswith("mlp_") else None
        if source is not None and layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    gk, gb = gmf.get_layer("prediction").get_weights()
    mk, mb = mlp.get_layer("prediction").get_weights()
    neumf.get_layer("prediction").set_weights([np.r_[alpha * gk, (1 - alpha) * mk], alpha * gb + (1 - alpha) * mb])


def optimizer(learner: str, learning_rate: float) -> keras.optimizers.Optimizer:
    factories = {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "adagrad": keras.optimizers.Adagrad,
        "rmsprop": keras.optimizers.RMSprop,
    }
    return factories[learner](learning_rate=learning_rate)


def scorer(model: keras.Model):
    """A compiled inference function over index arrays (no Keras predict loop per call)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)])
    def score(users, items):
        return tf.reshape(model({USER_INPUT: users, ITEM_INPUT: items}, training=False), [-1])

    return score


def score_pairs(score, users: np.ndarray, items: np.ndarray, batch: int = 1 << 16) -> np.ndarray:
    out = [
        score(tf.constant(users[i : i + batch], tf.int32), tf.constant(items[i : i + batch], tf.int32)).numpy()
        for i in range(0, len(users), batch)
    ]
    return np.concatenate(out) if out else np.empty(0, np.float32)
