"""The networks, by name. Each takes (N, 1, 28, 28) images scaled to [0, 1] and returns 10 (or
num_classes) logits. New networks join NETWORKS."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mxnet import gluon
from mxnet.gluon import nn

COURSE_CHANNELS = (20, 50)  # the course's LeNet-style CNN


class Sequential(nn.HybridSequential):
    """HybridSequential that can average its logits over each image and its mirror image (test-time flips,
    for classes without a handedness). Set `flip_average` before the graph is traced (hybridize() again after
    changing it): the exported graph then carries the flip, so any server of the model gets it."""

    flip_average = False

    def hybrid_forward(self, F, x):
        logits = super().hybrid_forward(F, x)
        if self.flip_average:
            logits = (logits + super().hybrid_forward(F, F.flip(x, axis=3))) / 2
        return logits


def mlp(num_classes: int, dropout: float = 0.0, batch_norm: bool = False, **_) -> gluon.HybridBlock:
    """The course's MLP: 128-64-num_classes, ReLU."""
    net = Sequential()
    with net.name_scope():
        net.add(nn.Flatten())
        for units in (128, 64):
            net.add(*_dense(units, batch_norm))
        if dropout:
            net.add(nn.Dropout(dropout))
        net.add(nn.Dense(num_classes))
    return net


def cnn(
    num_classes: int, dropout: float = 0.0, batch_norm: bool = False, channels: Sequence[int] = COURSE_CHANNELS
) -> gluon.HybridBlock:
    """The course's LeNet-style CNN: conv 20@5x5 -> max-pool -> conv 50@5x5 -> max-pool -> dense 512 ->
    dense num_classes (ReLU; optional batch norm before each ReLU, optional dropout before the classifier).
    `channels`: the two convolutions' output channels (the course's 20 and 50 by default)."""
    net = Sequential()
    with net.name_scope():
        for width in channels:
            if batch_norm:
                net.add(nn.Conv2D(width, kernel_size=5, use_bias=False), nn.BatchNorm(), nn.Activation("relu"))
            else:
                net.add(nn.Conv2D(width, kernel_size=5, activation="relu"))
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
