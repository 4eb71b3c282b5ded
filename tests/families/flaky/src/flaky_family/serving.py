"""The linear family's handlers, except that predict_fn raises on every third call of a process."""

import itertools
import threading

from linear_family.serving import input_fn, model_fn, output_fn  # noqa: F401 - the handlers this module serves
from linear_family.serving import predict_fn as _predict

_calls = itertools.count(1)
_lock = threading.Lock()


def predict_fn(x, model):
    with _lock:
        call = next(_calls)
    if call % 3 == 0:
        raise RuntimeError(f"deliberate failure on call {call}")
    return _predict(x, model)
