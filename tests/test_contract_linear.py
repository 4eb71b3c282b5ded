"""The contract runtime in a real image: the linear test family, trained and served by docker."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest

from bench.soak.wire import Request, send
from byoc_runtime.checkpoints import CheckpointStore
from byoc_runtime.codecs import recordio_protobuf
from local.opt_ml import ChannelSpec
from tests.images import build_image

pytestmark = pytest.mark.docker
WEIGHTS, BIAS = np.array([1.0, 2.0, 3.0]), 0.5


@pytest.fixture(scope="module")
def image():
    return build_image("test-linear")


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    path = tmp_path_factory.mktemp("data") / "train.csv"
    np.savetxt(path, np.c_[x @ WEIGHTS + BIAS, x], delimiter=",")
    return path


@pytest.fixture(scope="module")
def trained(harness, image, train_csv):
    result = harness.train(image, {"l2": 0.0}, {"train": ChannelSpec(train_csv, "text/csv")})
    assert result.ok, result.logs()
    return result


@pytest.fixture(scope="module")
def endpoint(harness, image, trained):
    with harness.serve(image, trained.model_archive) as endpoint:
        yield endpoint


def test_train_writes_the_model(trained):
    assert (trained.model_dir / "model.npz").exists()
    assert trained.model_archive is not None and trained.model_archive.stat().st_size > 0
    assert trained.master.failure is None
    assert "#metric: train_mse=" in trained.master.logs


def test_bad_hyperparameter_writes_failure_and_exits_non_zero(harness, image, train_csv, dump_logs_on_failure):
    result = harness.train(image, {"l2": "minus one"}, {"train": ChannelSpec(train_csv, "text/csv")})
    dump_logs_on_failure(result)
    assert result.master.exit_code != 0
    assert result.master.failure.splitlines()[0] == (
        "Hyperparameter 'l2' is invalid: expected a number, got 'minus one'"
    )


def test_pipe_mode(harness, image, train_csv, dump_logs_on_failure):
    result = harness.train(image, {}, {"train": ChannelSpec(train_csv, "text/csv", input_mode="Pipe")})
    dump_logs_on_failure(result)
    assert result.ok, result.logs()
    assert np.allclose(np.load(result.model_dir / "model.npz")["weights"], WEIGHTS)


def test_ping_and_execution_parameters(endpoint):
    assert endpoint.ping().status_code == 200
    params = endpoint.get("/execution-parameters").json()
    assert params["BatchStrategy"] == "MULTI_RECORD" and params["MaxPayloadInMB"] == 6
    assert params["MaxConcurrentTransforms"] >= 1


def _expected(x):
    return (np.asarray(x) @ WEIGHTS + BIAS).tolist()


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


X = [[1.0, 0.0, 0.0], [0.5, -1.0, 2.0]]


@pytest.mark.parametrize(
    "body, content_type",
    [
        ('{"instances": [[1, 0, 0], [0.5, -1, 2]]}', "application/json"),
        ("1,0,0\n0.5,-1,2\n", "text/csv"),
        (_npy(np.array(X)), "application/x-npy"),
        (recordio_protobuf.write_dense(np.array(X, dtype=np.float32)), "application/x-recordio-protobuf"),
        ('{"features": [1, 0, 0]}\n{"features": [0.5, -1, 2]}\n', "application/jsonlines"),
    ],
)
def test_invocations(endpoint, body, content_type):
    response = endpoint.invoke(body, content_type)
    assert response.status_code == 200, response.text
    scores = [p["score"] for p in response.json()["predictions"]]
    assert np.allclose(scores, _expected(X), atol=1e-4)


def test_response_types(endpoint):
    csv = endpoint.invoke("1,0,0\n0.5,-1,2", "text/csv", accept="text/csv")
    assert csv.headers["Content-Type"].startswith("text/csv")
    assert np.allclose([float(v) for v in csv.text.split()], _expected(X))
    npy = endpoint.invoke("1,0,0\n0.5,-1,2", "text/csv", accept="application/x-npy")
    assert np.allclose(np.load(io.BytesIO(npy.content)), _expected(X))


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        ("<xml/>", "application/xml", 415),
        ("{broken", "application/json", 400),
        ("1,2\n", "text/csv", 400),
        ('{"instances": [["a", "b", "c"]]}', "application/json", 400),
        (b"\x93NUMPY\x01\x00garbage", "application/x-npy", 400),
        (b"\xde\xad\xbe\xef" * 4, "application/x-recordio-protobuf", 400),
    ],
)
def test_bad_inputs_are_4xx_json(endpoint, body, content_type, status):
    response = endpoint.invoke(body, content_type)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()
    assert set(error) == {"error", "error_type"} and "Traceback" not in response.text


def test_oversized_body_is_413(endpoint):
    response = endpoint.invoke(b"1,0,0\n" * (7 * 1024 * 1024 // 6), "text/csv")
    assert response.status_code == 413 and response.json()["error_type"] == "PayloadTooLarge"


def test_a_thousand_bad_requests_then_a_good_one(endpoint):
    bad = [("{", "application/json"), ("x", "application/xml"), ("1,2", "text/csv"), ("[[1]]", "application/json")]
    statuses = {endpoint.invoke(*bad[i % len(bad)]).status_code for i in range(1000)}
    assert statuses <= {400, 415}
    good = endpoint.invoke('{"instances": [[1, 0, 0]]}')
    assert good.status_code == 200 and np.isclose(good.json()["predictions"][0]["score"], 1.5)


def test_large_batch_in_one_request(endpoint):
    x = np.random.default_rng(1).normal(size=(10000, 3))
    response = endpoint.invoke(_npy(x), "application/x-npy", accept="application/x-npy")
    assert np.allclose(np.load(io.BytesIO(response.content)), x @ WEIGHTS + BIAS)


UIDS_OF_SERVER = (
    "import os\n"
    "for pid in set(filter(str.isdigit, os.listdir('/proc'))) - {str(os.getpid())}:\n"
    "    if b'byoc_runtime.serve' in open(f'/proc/{pid}/cmdline', 'rb').read():\n"
    "        status = open(f'/proc/{pid}/status').read()\n"
    "        print(status.split('Uid:')[1].split()[0])\n"
)


def test_workers_do_not_run_as_root(endpoint):
    uids = endpoint.container.exec_run(["python", "-c", UIDS_OF_SERVER]).output.decode().split()
    assert uids.count("0") == 1, f"only the gunicorn master runs as root: {uids}"
    assert len(uids) >= 2


def test_bind_to_port_and_workers_env(harness, image, trained, dump_logs_on_failure):
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "20"}
    with harness.serve(image, trained.model_archive, environment=env, port=9123) as endpoint:
        dump_logs_on_failure(endpoint)
        assert endpoint.invoke("[[0, 0, 1]]").json()["predictions"][0]["score"] == pytest.approx(3.5)
        assert endpoint.get("/execution-parameters").json()["MaxConcurrentTransforms"] == 1
        assert "with 1 gthread worker(s), timeout 20 s" in endpoint.logs()


def test_sigterm_stops_the_server_quickly_and_in_flight_requests_finish(harness, image, trained):
    endpoint = harness.start_endpoint(image, trained.model_archive)
    results = []
    x = _npy(np.random.default_rng(2).normal(size=(200000, 3)))

    def slow_request():
        results.append(endpoint.invoke(x, "application/x-npy", accept="application/x-npy").status_code)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.05)
    seconds = harness.stop_endpoint(endpoint)
    thread.join(10)
    assert seconds < 25, f"docker stop took {seconds:.1f} s (SIGKILL comes at 30 s)"
    assert results in ([200], []), results


def test_checkpoint_then_resume_after_docker_stop(harness, image, train_csv, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    store = CheckpointStore(checkpoints, "linear")
    channels = {"train": ChannelSpec(train_csv, "text/csv")}

    def stop_soon(containers):
        deadline = time.time() + 30
        while not store.steps() and time.time() < deadline:
            time.sleep(0.05)
        containers[0].stop(timeout=30)

    first = harness.train(
        image, {"epochs": 5000, "epoch_seconds": 0.01}, channels, checkpoint_dir=checkpoints, on_started=stop_soon
    )
    assert first.master.exit_code != 0
    assert "stopped by SIGTERM" in first.master.failure
    epoch = store.latest().step
    second = harness.train(image, {"epochs": epoch + 5}, channels, checkpoint_dir=checkpoints)
    assert second.ok, second.logs()
    assert f"resuming from checkpoint at epoch {epoch}" in second.master.logs


def _raw(endpoint, payload: bytes, timeout: float = 10.0) -> tuple[int | None, bytes]:
    """Send bytes as they are on a new connection; (status, body) of the answer, or (None, b"") if none."""
    host, port = endpoint.url.removeprefix("http://").rsplit(":", 1)
    outcome = send(Request("raw", payload, None, mode="raw"), host, int(port), timeout)
    return outcome.status, outcome.body


def test_malformed_requests_that_gunicorn_refuses_are_json(endpoint):
    for payload, status in [
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\nContent-Length: 0\r\n\r\n", 431),
    ]:
        answer = _raw(endpoint, payload)
        assert answer[0] == status and set(json.loads(answer[1])) == {"error", "error_type"}, answer
    assert endpoint.ping().status_code == 200


def test_clients_trickling_their_headers_get_408_and_hold_nobody_up(harness, image, trained):
    # More trickling clients than the server has request threads (2 workers x 4): gunicorn's gthread worker
    # alone gives each a thread until its head is complete (this test fails with BYOC_WORKER_CLASS set to it).
    env = {"BYOC_REQUEST_HEADER_TIMEOUT": "3", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    with harness.serve(image, trained.model_archive, environment=env) as endpoint:
        host, port = endpoint.url.removeprefix("http://").rsplit(":", 1)
        slow = Request("slow", b"[[1, 0, 0]]", "application/json", mode="trickle")
        outcomes: list = []
        threads = [threading.Thread(target=lambda: outcomes.append(send(slow, host, int(port), 30))) for _ in range(12)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # every slow client has sent its first bytes and holds a thread, or waits for one
        started = time.perf_counter()
        answer = endpoint.invoke("[[0, 0, 1]]", timeout=10)
        # Answered once the slow clients' 3 s are up (without deadlines: when the last of them is done, ~30 s).
        assert answer.status_code == 200 and time.perf_counter() - started < 3.5
        for thread in threads:
            thread.join(30)
        assert len(outcomes) == 12
        for outcome in outcomes:  # cut off after the head timeout: a 408 answer, or the connection closed
            assert outcome.ended - outcome.started < 3 + 2.5, outcome
            assert outcome.status in (408, None), outcome


def test_sigterm_answers_every_request_already_sent(harness, image, trained):
    endpoint = harness.start_endpoint(image, trained.model_archive)
    host, port = endpoint.url.removeprefix("http://").rsplit(":", 1)
    request = Request("good", _npy(np.random.default_rng(3).normal(size=(20000, 3))), "application/x-npy")
    outcomes: list = []
    threads = [threading.Thread(target=lambda: outcomes.append(send(request, host, int(port), 20))) for _ in range(24)]
    for thread in threads:
        thread.start()
    time.sleep(0.02)  # all sent or being sent; most not yet answered
    started = time.perf_counter()
    endpoint.container.kill(signal="SIGTERM")
    code = endpoint.container.wait(timeout=40)["StatusCode"]
    seconds = time.perf_counter() - started
    for thread in threads:
        thread.join(20)
    harness.stop_endpoint(endpoint, timeout=1)
    assert code == 0 and seconds < 10, (code, seconds)
    statuses = sorted(str(o.status or o.error) for o in outcomes)
    # A client whose connection the kernel had not even accepted when the listeners closed is refused
    # outright (nothing was received, nothing is lost); every request that reached the server is answered.
    assert all(s == "200" or "Connection refused" in s for s in statuses), statuses
    assert statuses.count("200") >= 1
