"""The networks, by name. Each takes (N, 1, 28, 28) images scaled to [0, 1] and returns 10 (or
num_classes) logits. New networks join NETWORKS."""

from __future__ import annotations

from collections.abc import Callable

from mxnet import gluon
from mxnet.gluon import nn


def mlp(num_classes: int, dropout: float = 0.0, batch_norm: bool = False) -> gluon.HybridBlock:
    """The course's MLP: 128-64-num_classes, ReLU."""
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Flatten())
        for units in (128, 64):
            net.add(*_dense(units, batch_norm))
        if dropout:
            net.add(nn.Dropout(dropout))
        net.add(nn.Dense(num_classes))
    return net


def cnn(num_classes: int, dropout: float = 0.0, batch_norm: bool = False) -> gluon.HybridBlock:
    """The course's LeNet-style CNN: conv 20@5x5 -> max-pool -> conv 50@5x5 -> max-pool -> dense 512 ->
    dense num_classes (ReLU; optional batch norm before each ReLU, optional dropout before the classifier)."""
    net = nn.HybridSequential()
    with net.name_scope():
        for channels in (20, 50):
            if batch_norm:
                net.add(nn.Conv2D(channels, kernel_size=5, use_bias=False), nn.BatchNorm(), nn.Activation("relu"))
            else:
                net.add(nn.Conv2D(channels, kernel_size=5, activation="relu"))
            net.add(nn.MaxPool2D(pool_size=2, strides=2))
        net.add(nn.Flatten(), *_dense(512, batch_norm))
        if dropout:
            net.add(nn.Dropout(dropout))
        net.add(nn.Dense(num_classes))
    return net


def _dense(units: int, batch_norm: bool) -> list[gluon.HybridBlock]:
    if batch_norm:
        return [nn.Dense(units, use_bias=False), nn.BatchNorm(), nn.Activation("relu")]
    return [nn.Dense(units, activation="relu")]


NETWORKS: dict[str, Callable[..., gluon.HybridBlock]] = {"mlp": mlp, "cnn": cnn}
