"""Cross-request batching inside one worker, with no added wait.

A family whose forward pass costs much more per call than per row (a CNN: 1 image 0.6 ms, 4 images 0.9 ms
in MXNet on one core) defines `predict_batch_fn(inputs, model) -> predictions`, one prediction per input
(each input is what its input_fn returned). The worker's threads parse their requests concurrently; when
one reaches the model while another's batch is running, it queues its input, and when that batch ends the
next thread runs everything queued as one call. A request alone (a quiet endpoint) runs at once, by itself:
batching never waits for company, so it adds no latency, and under load it turns N forward passes into one.

Each request keeps its own answer and its own error: when a batch of several fails, every input is run again
alone, so a bad request gets its 400 and the others their answers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

DEFAULT_MAX_BATCH = 32  # requests per call: bounds how long the last one in a batch waits for the others


def enabled(environ=os.environ) -> bool:
    return (environ.get("BYOC_BATCHING") or "true").strip().lower() not in ("0", "false", "no", "off")


def max_batch(environ=os.environ) -> int:
    return max(1, int(environ.get("BYOC_MAX_BATCH") or DEFAULT_MAX_BATCH))


class _Slot:
    __slots__ = ("data", "done", "result", "error")

    def __init__(self, data: Any):
        self.data, self.done, self.result, self.error = data, False, None, None


class Batcher:
    """Runs `predict_batch(inputs, model)` for the requests of one worker that reach the same model together."""

    def __init__(self, predict_batch: Callable[[list[Any], Any], list[Any]], max_items: int = DEFAULT_MAX_BATCH):
        self._predict_batch, self._max = predict_batch, max_items
        self._cond = threading.Condition()
        self._queue: list[_Slot] = []
        self._busy = False
        self.batches = self.items = 0  # for tests and benchmarks: how much batching happened

    def predict(self, data: Any, model: Any) -> Any:
        slot = _Slot(data)
        with self._cond:
            self._queue.append(slot)
        while True:
            with self._cond:
                while self._busy and not slot.done:
                    self._cond.wait()
                if slot.done:
                    break
                self._busy = True
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
            try:
                self._run(batch, model)
            finally:
                with self._cond:
                    for item in batch:
                        item.done = True
                    self._busy = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _run(self, batch: list[_Slot], model: Any) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = self._predict_batch([item.data for item in batch], model)
            if len(results) != len(batch):
                raise RuntimeError(f"predict_batch_fn answered {len(results)} predictions for {len(batch)} inputs")
        except BaseException as err:  # noqa: BLE001 - each request's own error is found below
            if len(batch) == 1:
                batch[0].error = err
                return
            for item in batch:  # which input failed: each alone, so the others still get their answers
                self._run([item], model)
            return
        for item, result in zip(batch, results, strict=True):
            item.result = result
