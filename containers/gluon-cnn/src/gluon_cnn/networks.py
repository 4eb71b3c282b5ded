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
    num_classes: int,
    dropout: float = 0.0,
    batch_norm: bool = False,
    channels: Sequence[int] = COURSE_CHANNELS,
    kernels: Sequence[int] = (5,),
    padding: str = "valid",
) -> gluon.HybridBlock:
    """The course's LeNet-style CNN: conv 20@5x5 -> max-pool -> conv 50@5x5 -> max-pool -> dense 512 ->
    dense num_classes (ReLU; optional batch norm before each ReLU, optional dropout before the classifier).
    `channels`: the convolutions' output channels (the course's 20 and 50 by default), each followed by a 2x2
    max-pool; `kernels`: their kernel sizes (one value: all of them); `padding`: "valid" (none, the course's)
    or "same" (the output keeps the input's height and width)."""
    kernels = list(kernels) * len(channels) if len(kernels) == 1 else list(kernels)
    if len(kernels) != len(channels):
        raise ValueError(f"{len(kernels)} kernel sizes for {len(channels)} convolutions")
    net = Sequential()
    side = 28
    with net.name_scope():
        for width, kernel in zip(channels, kernels, strict=True):
            pad = (kernel - 1) // 2 if padding == "same" else 0
            side = (side + 2 * pad - kernel + 1) // 2
            if side < 1:
                raise ValueError(f"{len(channels)} convolutions of kernels {kernels} ({padding}) leave no pixels")
            if batch_norm:
                conv = nn.Conv2D(width, kernel_size=kernel, padding=pad, use_bias=False)
                net.add(conv, nn.BatchNorm(), nn.Activation("relu"))
            else:
                net.add(nn.Conv2D(width, kernel_size=kernel, padding=pad, activation="relu"))
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
