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


def build_object2vec(
    settings: dict, num_users: int, num_items: int, global_mean: float, sparse_grad: bool = False
) -> Object2VecNet:
    """The network of object2vec.network_settings: the core alone for a regression or a binary softmax, the
    towers for more classes."""
    core = settings["num_classes"] <= 2
    return Object2VecNet(
        num_users,
        num_items,
        tuple(settings["token_dims"]),
        settings["enc_dim"],
        settings["comparators"],
        settings["mlp_dim"],
        settings["mlp_layers"],
        settings["mlp_activation"],
        settings["num_classes"],
        global_mean,
        sparse_grad=sparse_grad,
        core=core,
        towers=not core,
    )


def arrays(net: gluon.HybridBlock) -> dict[str, np.ndarray]:
    """Parameters by stable name: user_embedding, item_embedding, [user_bias, item_bias], global_bias,
    hidden_<n>_weight/_bias (MXNet layout: weight is (out, in)), output_weight/_bias."""
    if isinstance(net, Object2VecNet):
        return object2vec_arrays(net)
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


class Object2VecNet(gluon.HybridBlock):
    """Object2Vec's network for one user token and one item token: the biased-MF core, the towers, or both.

    Core: <u, i> + b_u + b_i + b on the token embeddings (enc<k>_token_embedding_dim), penalised per rating
    as model=mf is; a regression's output, or class 1's logit over class 0's in a binary softmax.
    Towers: each embeds its token and projects it to enc_dim (Object2Vec's pooled_embedding encoder over a
    sequence of one); the comparator joins the two encodings (hadamard e0*e1, concat [e0, e1], abs_diff
    |e0-e1|, as comparator_list says); an MLP (mlp_layers x mlp_dim, mlp_activation) and the output layer.
    build_object2vec uses the core for a regression or a binary softmax and the towers for more classes:
    on ML-100K the towers fitted the training pairs within two to four epochs whatever was tried (README,
    Object2Vec mode), and were worse than the core alone.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        token_dims: tuple[int, int],
        enc_dim: int,
        comparators: list[str],
        mlp_dim: int,
        mlp_layers: int,
        activation: str,
        outputs: int,
        global_mean: float,
        dropout: float = 0.0,
        sparse_grad: bool = False,
        core: bool | None = None,
        towers: bool | None = None,
    ):
        super().__init__()
        self.comparators, self.outputs = list(comparators), outputs
        self.biases = outputs <= 2 if core is None else core  # the biased-MF core
        self.towers = outputs > 1 if towers is None else towers  # encoders, comparator, MLP
        act = None if activation == "linear" else activation
        with self.name_scope():
            init = mx.init.Normal(0.01)
            self.user_embedding = nn.Embedding(
                num_users, token_dims[0], weight_initializer=init, sparse_grad=sparse_grad
            )
            self.item_embedding = nn.Embedding(
                num_items, token_dims[1], weight_initializer=init, sparse_grad=sparse_grad
            )
            if self.biases:
                self.user_bias = nn.Embedding(num_users, 1, weight_initializer="zeros", sparse_grad=sparse_grad)
                self.item_bias = nn.Embedding(num_items, 1, weight_initializer="zeros", sparse_grad=sparse_grad)
                # a binary classifier's core is class 1's log-odds: it starts at the training labels'
                start = global_mean if outputs == 1 else float(np.log(global_mean / max(1 - global_mean, 1e-6)))
                self.global_bias = self.params.get("global_bias", shape=(1,), init=mx.init.Constant(start))
            if self.towers:
                self.user_encoder = nn.Dense(enc_dim, weight_initializer=mx.init.Xavier())
                self.item_encoder = nn.Dense(enc_dim, weight_initializer=mx.init.Xavier())
                self.dropout = nn.Dropout(dropout) if dropout else None
                self.hidden = nn.HybridSequential()
                for _ in range(mlp_layers):
                    self.hidden.add(nn.Dense(mlp_dim, activation=act, weight_initializer=mx.init.Xavier()))
                # with the core, the towers start silent and learn what the core misses
                self.output = nn.Dense(outputs, weight_initializer="zeros" if self.biases else mx.init.Xavier())

    def core_parameters(self):
        """The core's rows and biases: they learn at a rate scaled to the batch size (fitting.fit)."""
        blocks = [self.user_embedding, self.item_embedding] + ([self.user_bias, self.item_bias] if self.biases else [])
        params = [p for block in blocks for p in block.collect_params().values()]
        return params + ([self.global_bias] if self.biases else [])

    def encode(self, F, users, items):
        return self.user_encoder(self.user_embedding(users)), self.item_encoder(self.item_embedding(items))

    def hybrid_forward(self, F, users, items, global_bias=None):
        out = self._towers(F, users, items) if self.towers else None
        if not self.biases:
            return out
        u, i = self.user_embedding(users), self.item_embedding(items)
        offsets = F.reshape(self.user_bias(users) + self.item_bias(items), (-1,))
        core = F.broadcast_add(F.sum(u * i, axis=1) + offsets, global_bias)
        if self.outputs == 1:
            return core if out is None else F.reshape(out, (-1,)) + core
        core = F.reshape(core, (-1, 1))  # class 1's logit over class 0's
        logits = F.concat(F.zeros_like(core), core, dim=1)
        return logits if out is None else out + logits

    def _towers(self, F, users, items):
        e0, e1 = self.encode(F, users, items)
        parts = []
        for name in self.comparators:
            if name == "hadamard":
                parts.append(e0 * e1)
            elif name == "concat":
                parts += [e0, e1]
            else:
                parts.append(F.abs(e0 - e1))
        joined = F.concat(*parts, dim=1) if len(parts) > 1 else parts[0]
        if self.dropout is not None:
            joined = self.dropout(joined)
        return self.output(self.hidden(joined))

    def penalty(self, F, users, items):
        """Per-rating L2, as the mf model penalises its rows: the core's token embeddings and biases (Funk
        SVD); without the core, the towers' encodings (not the token embeddings, which the encoders'
        projections would simply scale up)."""
        if self.biases:
            u, i = self.user_embedding(users), self.item_embedding(items)
            total = F.sum(F.square(u), axis=1) + F.sum(F.square(i), axis=1)
            return total + F.reshape(F.square(self.user_bias(users)) + F.square(self.item_bias(items)), (-1,))
        e0, e1 = self.encode(F, users, items)
        return F.sum(F.square(e0), axis=1) + F.sum(F.square(e1), axis=1)


def object2vec_arrays(net: Object2VecNet) -> dict[str, np.ndarray]:
    """Parameters by stable name (MXNet's Dense layout: weight (out, in)): user_embedding, item_embedding,
    and a regression's user_bias, item_bias, global_bias, or a classifier's user_encoder_weight/_bias,
    item_encoder_weight/_bias, hidden_<n>_weight/_bias, output_weight/_bias."""
    out = {
        "user_embedding": net.user_embedding.weight.data().asnumpy(),
        "item_embedding": net.item_embedding.weight.data().asnumpy(),
    }
    if net.biases:
        out["user_bias"] = net.user_bias.weight.data().asnumpy().ravel()
        out["item_bias"] = net.item_bias.weight.data().asnumpy().ravel()
        out["global_bias"] = net.global_bias.data().asnumpy()
    if not net.towers:
        return out
    out["output_weight"] = net.output.weight.data().asnumpy()
    out["output_bias"] = net.output.bias.data().asnumpy()
    for side in ("user", "item"):
        encoder = getattr(net, f"{side}_encoder")
        out[f"{side}_encoder_weight"] = encoder.weight.data().asnumpy()
        out[f"{side}_encoder_bias"] = encoder.bias.data().asnumpy()
    for number, layer in enumerate(net.hidden):
        out[f"hidden_{number}_weight"] = layer.weight.data().asnumpy()
        out[f"hidden_{number}_bias"] = layer.bias.data().asnumpy()
    return out
