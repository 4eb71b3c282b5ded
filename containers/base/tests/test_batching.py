"""Cross-request batching (batching.py): requests that meet at the model share one predict_batch_fn call,
each keeps its own answer and its own error, and a request alone never waits."""

from __future__ import annotations

import threading
import time
import types

import pytest

from byoc_runtime import batching
from byoc_runtime.app import create_app
from byoc_runtime.batching import Batcher
from byoc_runtime.handlers import Handlers
from byoc_runtime.serving_settings import ServingSettings


class SlowDoubler:
    """predict_batch_fn doubling each input; the first call holds the model long enough for others to queue."""

    def __init__(self, first_call_seconds: float = 0.2):
        self.calls: list[list] = []
        self._first = first_call_seconds

    def __call__(self, inputs, model):
        self.calls.append(list(inputs))
        if len(self.calls) == 1:
            time.sleep(self._first)
        if any(x == "bad" for x in inputs):
            raise ValueError("bad input")
        return [x * 2 for x in inputs]


def _concurrently(batcher: Batcher, inputs: list, stagger: float = 0.0) -> dict:
    answers: dict = {}

    def call(x):
        try:
            answers[x] = batcher.predict(x, model=None)
        except Exception as err:  # noqa: BLE001 - the test looks at which error each request got
            answers[x] = err

    threads = []
    for x in inputs:
        threads.append(threading.Thread(target=call, args=(x,)))
        threads[-1].start()
        time.sleep(stagger)
    for thread in threads:
        thread.join(10)
    return answers


def test_a_request_alone_runs_at_once_by_itself():
    predict = SlowDoubler(first_call_seconds=0)
    batcher = Batcher(predict)
    started = time.monotonic()
    assert batcher.predict(21, model=None) == 42
    assert time.monotonic() - started < 0.05
    assert predict.calls == [[21]]


def test_requests_arriving_while_a_batch_runs_share_the_next_call():
    predict = SlowDoubler()
    batcher = Batcher(predict)
    answers = _concurrently(batcher, [1, 2, 3, 4, 5, 6], stagger=0.02)
    assert answers == {x: 2 * x for x in (1, 2, 3, 4, 5, 6)}
    assert predict.calls[0] == [1]  # the first ran alone, at once
    assert sorted(predict.calls[1]) == [2, 3, 4, 5, 6]  # the rest queued behind it: one call
    assert (batcher.batches, batcher.items) == (2, 6)


def test_the_batch_size_is_capped():
    predict = SlowDoubler()
    batcher = Batcher(predict, max_items=2)
    answers = _concurrently(batcher, [1, 2, 3, 4, 5], stagger=0.02)
    assert answers == {x: 2 * x for x in (1, 2, 3, 4, 5)}
    assert max(len(call) for call in predict.calls) == 2


def test_a_bad_input_fails_alone_and_the_others_get_their_answers():
    predict = SlowDoubler()
    batcher = Batcher(predict)
    answers = _concurrently(batcher, [1, 2, "bad", 4], stagger=0.02)
    assert isinstance(answers["bad"], ValueError)
    assert {x: answers[x] for x in (1, 2, 4)} == {1: 2, 2: 4, 4: 8}


def test_a_wrong_number_of_predictions_is_an_error_not_a_wrong_answer():
    batcher = Batcher(lambda inputs, model: [0])
    answers = _concurrently(Batcher(lambda inputs, model: [0] * (len(inputs) + 1)), [1])
    assert isinstance(answers[1], RuntimeError)
    assert batcher.predict(5, None) == 0


def test_settings(monkeypatch):
    assert batching.enabled({}) and batching.max_batch({}) == batching.DEFAULT_MAX_BATCH
    assert not batching.enabled({"BYOC_BATCHING": "false"})
    assert batching.max_batch({"BYOC_MAX_BATCH": "4"}) == 4


# --- through the app -----------------------------------------------------------------------------------------


def _handlers(predict_batch, parse=int):
    return Handlers(
        model_fn=lambda model_dir: "model",
        input_fn=lambda body, content_type: parse(body.decode()),
        predict_fn=lambda x, model: x * 2,
        output_fn=lambda prediction, accept: str(prediction).encode(),
        predict_batch_fn=predict_batch,
        accepts=None,
    )


def _settings(tmp_path):
    return ServingSettings(model_dir=tmp_path, family=None, max_payload_mb=1.0, workers=1)


def test_the_app_batches_concurrent_invocations(tmp_path):
    predict = SlowDoubler()
    app = create_app(_settings(tmp_path), _handlers(predict), background_load=False)
    answers = {}

    def call(x):
        answers[x] = app.test_client().post("/invocations", data=str(x), headers={"Content-Type": "text/plain"})

    threads = [threading.Thread(target=call, args=(x,)) for x in range(1, 6)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(10)
    assert {x: (r.status_code, r.data) for x, r in answers.items()} == {
        x: (200, str(2 * x).encode()) for x in range(1, 6)
    }
    assert app.batcher.batches == 2 and app.batcher.items == 5


def test_a_bad_request_in_a_batch_gets_its_400(tmp_path):
    predict = SlowDoubler()
    app = create_app(_settings(tmp_path), _handlers(predict, parse=str), background_load=False)
    answers = {}

    def call(x):
        answers[x] = app.test_client().post("/invocations", data=x, headers={"Content-Type": "text/plain"})

    threads = [threading.Thread(target=call, args=(x,)) for x in ("1", "bad", "3")]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(10)
    assert answers["bad"].status_code == 400 and "bad input" in answers["bad"].get_json()["error"]
    assert answers["1"].data == b"11" and answers["3"].data == b"33"  # strings doubled: their own answers


@pytest.mark.parametrize("switch", ["false", "0"])
def test_batching_can_be_switched_off(tmp_path, monkeypatch, switch):
    monkeypatch.setenv("BYOC_BATCHING", switch)
    app = create_app(_settings(tmp_path), _handlers(SlowDoubler(0)), background_load=False)
    assert app.batcher is None
    assert app.test_client().post("/invocations", data="4", headers={"Content-Type": "text/plain"}).data == b"8"


def test_a_user_module_replacing_predict_fn_drops_the_familys_batch_function():
    family = types.ModuleType("family")
    family.predict_fn = lambda x, model: x
    family.predict_batch_fn = lambda xs, model: xs
    user = types.ModuleType("inference")
    user.predict_fn = lambda x, model: -x
    handlers = Handlers().overridden_by(family)
    assert handlers.predict_batch_fn is family.predict_batch_fn
    assert handlers.overridden_by(user).predict_batch_fn is None
    formatter = types.ModuleType("inference")
    formatter.output_fn = lambda prediction, accept: b""
    assert handlers.overridden_by(formatter).predict_batch_fn is family.predict_batch_fn
