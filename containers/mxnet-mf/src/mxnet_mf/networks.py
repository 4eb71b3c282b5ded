"""The three Gluon networks (hybridizable): rating = f(user index, item index).

mf:   <p_u, q_i> + b_u + b_i + mu                                 (the course's `plain_net` plus biases)
deep: MLP(concat(p_u, q_i)) + b_u + b_i + mu, layers `hidden_units`, dropout after each hidden layer
mlp:  Dense(1)(relu(Dense(hidden_units[0])(concat(p_u, q_i)))) + mu (Lab 3's one-hidden-layer net)

`arrays(net)` exports the parameters as plain numpy arrays under stable names; the serving side
(recommender.py) computes the same functions from them without MXNet.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import nn

MODELS = ("mf", "deep", "mlp")


class _Embeddings(gluon.HybridBlock):
    def __init__(
        self, num_users: int, num_items: int, num_factors: int, biases: bool, global_mean: float, sparse_grad: bool
    ):
        super().__init__()
        self.biases, self.num_factors = biases, num_factors
        with self.name_scope():
            init = mx.init.Normal(0.01)
            self.user_embedding = nn.Embedding(num_users, num_factors, weight_initializer=init, sparse_grad=sparse_grad)
            self.item_embedding = nn.Embedding(num_items, num_factors, weight_initializer=init, sparse_grad=sparse_grad)
            if biases:
                self.user_bias = nn.Embedding(num_users, 1, weight_initializer="zeros", sparse_grad=sparse_grad)
                self.item_bias = nn.Embedding(num_items, 1, weight_initializer="zeros", sparse_grad=sparse_grad)
            self.global_bias = self.params.get("global_bias", shape=(1,), init=mx.init.Constant(global_mean))

    def row_sums(self, F, rows):
        """(batch, num_factors) -> (batch,). A matrix-vector product with ones: MXNet's CPU sum(axis=1)
        took 4x as long (290 vs 74 us for 1024 x 64), and it ran on every batch."""
        return F.reshape(F.dot(rows, F.ones(shape=(self.num_factors, 1))), (-1,))

    def penalty(self, F, users, items):
        """Per-rating L2 of the embedding rows (and biases) the batch touches: frequent ids are
        regularised more, as in Funk's SVD, which is what keeps MF from overfitting sparse ratings."""
        total = self.row_sums(F, F.square(self.user_embedding(users)) + F.square(self.item_embedding(items)))
        if self.biases:
            total = total + F.reshape(F.square(self.user_bias(users)) + F.square(self.item_bias(items)), (-1,))
        return total

    def offsets(self, F, users, items, global_bias):
        """b_u + b_i + mu (or mu alone), shape (batch,)."""
        if not self.biases:
            return F.broadcast_add(F.zeros_like(F.cast(users, "float32")), global_bias)
        user_bias = F.reshape(self.user_bias(users), (-1,))
        item_bias = F.reshape(self.item_bias(items), (-1,))
        return F.broadcast_add(user_bias + item_bias, global_bias)


class MatrixFactorization(_Embeddings):
    def __init__(self, num_users: int, num_items: int, num_factors: int, global_mean: float, sparse_grad: bool):
        super().__init__(num_users, num_items, num_factors, True, global_mean, sparse_grad)

    def hybrid_forward(self, F, users, items, global_bias):
        dot = self.row_sums(F, self.user_embedding(users) * self.item_embedding(items))
        return dot + self.offsets(F, users, items, global_bias)


class DeepFactorization(_Embeddings):
    def __init__(
        self,
        num_users: int,
        num_items: int,
        num_factors: int,
        hidden_units: list[int],
        dropout: float,
        global_mean: float,
        biases: bool = True,
        sparse_grad: bool = False,
    ):
        super().__init__(num_users, num_items, num_factors, biases, global_mean, sparse_grad)
        with self.name_scope():
            self.hidden = nn.HybridSequential()
            for units in hidden_units:
                self.hidden.add(nn.Dense(units, activation="relu", weight_initializer=mx.init.Xavier()))
                if dropout > 0:
                    self.hidden.add(nn.Dropout(dropout))
            self.output = nn.Dense(1, weight_initializer=mx.init.Xavier())

    def hybrid_forward(self, F, users, items, global_bias):
        joint = F.concat(self.user_embedding(users), self.item_embedding(items), dim=1)
        score = F.reshape(self.output(self.hidden(joint)), (-1,))
        return score + self.offsets(F, users, items, global_bias)


def build(
    model: str,
    num_users: int,
    num_items: int,
    num_factors: int,
    hidden_units: list[int],
    dropout: float,
    global_mean: float,
    sparse_grad: bool = False,
) -> gluon.HybridBlock:
    """sparse_grad: row-sparse embedding gradients, so the optimizer touches only the batch's rows (lazy
    Adam: about 1.5x the ratings/s at batch 256 on a CPU); single device and host only."""
    if model == "mf":
        return MatrixFactorization(num_users, num_items, num_factors, global_mean, sparse_grad)
    if model == "deep":
        return DeepFactorization(
            num_users, num_items, num_factors, hidden_units, dropout, global_mean, sparse_grad=sparse_grad
        )
    if model == "mlp":
        return DeepFactorization(
            num_users, num_items, num_factors, hidden_units[:1], 0.0, global_mean, biases=False, sparse_grad=sparse_grad
        )
    raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")


def arrays(net: gluon.HybridBlock) -> dict[str, np.ndarray]:
    """Parameters by stable name: user_embedding, item_embedding, [user_bias, item_bias], global_bias,
    hidden_<n>_weight/_bias (MXNet layout: weight is (out, in)), output_weight/_bias."""
    out = {
        "user_embedding": net.user_embedding.weight.data().asnumpy(),
        "item_embedding": net.item_embedding.weight.data().asnumpy(),
        "global_bias": net.global_bias.data().asnumpy(),
    }
    if net.biases:
        out["user_bias"] = net.user_bias.weight.data().asnumpy().ravel()
        out["item_bias"] = net.item_bias.weight.data().asnumpy().ravel()
    if isinstance(net, DeepFactorization):
        dense = [layer for layer in net.hidden if isinstance(layer, nn.Dense)]
        for number, layer in enumerate(dense):
            out[f"hidden_{number}_weight"] = layer.weight.data().asnumpy()
            out[f"hidden_{number}_bias"] = layer.bias.data().asnumpy()
        out["output_weight"] = net.output.weight.data().asnumpy()
        out["output_bias"] = net.output.bias.data().asnumpy()
    return out
