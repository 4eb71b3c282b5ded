"""The training loop: hybridized network, whole data set resident on the device, metrics accumulated as
NDArrays (no per-batch .asnumpy() sync: the engine runs ahead and the CPU never waits on a batch).

Kept apart from train.py (the SageMaker job) so the benchmark runs exactly this loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

RUN_AHEAD = 50  # batches queued in the engine at most when nothing else waits


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    images: int
    seconds: float
    interrupted: bool = False

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def to_device(images: np.ndarray, labels: np.ndarray, ctx: mx.Context) -> tuple[mx.nd.NDArray, mx.nd.NDArray]:
    """uint8 images stay uint8 on the device (4x less memory); each batch is scaled there."""
    return mx.nd.array(images, ctx=ctx, dtype=np.uint8), mx.nd.array(labels, ctx=ctx, dtype=np.float32)


def scale(batch: mx.nd.NDArray) -> mx.nd.NDArray:
    """uint8 (B, 28, 28) -> float32 (B, 1, 28, 28) in [0, 1]: the network's input convention."""
    return (batch.astype("float32") / 255.0).expand_dims(axis=1)


def smoothed_cross_entropy(logits: mx.nd.NDArray, labels: mx.nd.NDArray, smoothing: float) -> mx.nd.NDArray:
    """Cross-entropy against (1 - smoothing) on the label plus smoothing spread evenly over every class."""
    log_p = mx.nd.log_softmax(logits, axis=1)
    return -((1.0 - smoothing) * mx.nd.pick(log_p, labels, axis=1) + smoothing * log_p.mean(axis=1))


class Loop:
    def __init__(
        self, net: gluon.HybridBlock, trainer: gluon.Trainer, contexts: list[mx.Context], label_smoothing: float = 0.0
    ):
        self.net, self.trainer, self.contexts = net, trainer, contexts
        if label_smoothing:
            self.loss_fn = lambda logits, labels: smoothed_cross_entropy(logits, labels, label_smoothing)
        else:
            self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def train_epoch(
        self,
        images: mx.nd.NDArray,
        labels: mx.nd.NDArray,
        order: np.ndarray,
        batch_size: int,
        step_size: int,
        *,
        log_interval: int = 0,
        log: Callable[[int, float, float], None] | None = None,
        stop: Callable[[], bool] | None = None,
        max_batches: int | None = None,
    ) -> EpochResult:
        """One pass over images[order] in batches of batch_size (this worker's share); trainer.step(step_size)
        normalises by the global batch, so N workers of batch_size/N each equal one worker of batch_size."""
        started = time.perf_counter()
        shuffled_x = images.take(mx.nd.array(order, ctx=images.context, dtype="int64"))
        shuffled_y = labels.take(mx.nd.array(order, ctx=labels.context, dtype="int64"))
        batches = len(order) // batch_size if max_batches is None else min(max_batches, len(order) // batch_size)
        loss_sum = mx.nd.zeros(1, ctx=self.contexts[0])
        correct = mx.nd.zeros(1, ctx=self.contexts[0])
        interrupted, done = False, 0
        for b in range(batches):
            if stop is not None and stop():
                interrupted = True
                break
            x = scale(shuffled_x[b * batch_size : (b + 1) * batch_size])
            y = shuffled_y[b * batch_size : (b + 1) * batch_size]
            xs = gluon.utils.split_and_load(x, self.contexts, even_split=False)
            ys = gluon.utils.split_and_load(y, self.contexts, even_split=False)
            with autograd.record():
                outputs = [self.net(xi) for xi in xs]
                losses = [self.loss_fn(o, yi) for o, yi in zip(outputs, ys, strict=True)]
            for loss in losses:
                loss.backward()
            self.trainer.step(step_size)
            for o, yi, loss in zip(outputs, ys, losses, strict=True):
                correct += (o.argmax(axis=1) == yi).sum().as_in_context(correct.context)
                loss_sum += loss.sum().as_in_context(loss_sum.context)
            done += 1
            if log is not None and log_interval and done % log_interval == 0:
                seen = done * batch_size
                log(done, loss_sum.asscalar() / seen, correct.asscalar() / seen)  # the only sync, every N batches
            elif done % RUN_AHEAD == 0:
                correct.wait_to_read()  # bound how far Python runs ahead of the engine (queued batches hold memory)
        seen = max(done * batch_size, 1)
        loss_value, accuracy = loss_sum.asscalar() / seen, correct.asscalar() / seen
        return EpochResult(loss_value, accuracy, done * batch_size, time.perf_counter() - started, interrupted)

    def evaluate(
        self, images: mx.nd.NDArray, labels: mx.nd.NDArray, batch_size: int = 1000, flip_average: bool = False
    ) -> float:
        """Accuracy; flip_average: of the logits averaged over each image and its mirror image (what a model
        exported with networks.Sequential.flip_average answers), computed here with the training graph."""
        correct = mx.nd.zeros(1, ctx=self.contexts[0])
        for start in range(0, len(labels), batch_size):
            x = scale(images[start : start + batch_size])
            y = labels[start : start + batch_size]
            for xi, yi in zip(
                gluon.utils.split_and_load(x, self.contexts, even_split=False),
                gluon.utils.split_and_load(y, self.contexts, even_split=False),
                strict=True,
            ):
                logits = self.net(xi)
                if flip_average:
                    logits = logits + self.net(xi.flip(axis=3))
                correct += (logits.argmax(axis=1) == yi).sum().as_in_context(correct.context)
        return float(correct.asscalar()) / max(len(labels), 1)
