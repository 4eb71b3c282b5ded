"""The request-head deadline of the serving worker: it judges the client, never the server's own queue."""

import json
import socket
import time
from types import SimpleNamespace

import pytest

from byoc_runtime import server_worker
from byoc_runtime.server_worker import DeadlineSocket

HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 5\r\n\r\n"


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def _read_all(sock: DeadlineSocket) -> bytes:
    data = b""
    while chunk := sock.recv(7):  # small reads: the head spans several of them
        data += chunk
        if data.endswith(b"1,2,3"):
            break
    return data


def _answer(client: socket.socket) -> dict | None:
    client.settimeout(0.5)
    try:
        raw = client.recv(4096)
    except TimeoutError:
        return None
    return json.loads(raw.split(b"\r\n\r\n", 1)[1]) if raw else None


def test_a_stopping_worker_serves_a_head_that_arrived_while_its_connection_waited_for_a_thread(pair):
    server, client = pair
    worker = SimpleNamespace(stopping_since=None)
    sock = DeadlineSocket(server, worker)
    client.sendall(HEAD + b"1,2,3")
    worker.stopping_since = time.monotonic() - 5  # the thread gets to it long after the stop grace
    sock.start_request()
    assert _read_all(sock) == HEAD + b"1,2,3"
    assert _answer(client) is None  # nothing refused it


def test_a_head_still_missing_after_the_stop_grace_gets_503(pair):
    server, client = pair
    worker = SimpleNamespace(stopping_since=time.monotonic() - 5)
    sock = DeadlineSocket(server, worker)
    client.sendall(HEAD[:20])
    sock.start_request()
    assert sock.recv(7) == b""
    assert _answer(client)["error_type"] == "ServiceUnavailable"


def test_a_trickled_head_past_its_deadline_gets_408_even_with_bytes_waiting(pair, monkeypatch):
    monkeypatch.setattr(server_worker, "HEADER_TIMEOUT", 0.2)
    server, client = pair
    sock = DeadlineSocket(server, SimpleNamespace(stopping_since=None))
    sock.start_request()
    client.sendall(HEAD[:10])
    assert sock.recv(64) == HEAD[:10]
    time.sleep(0.3)
    client.sendall(HEAD[10:30])  # more bytes, but still no end of head: the client is too slow
    assert sock.recv(64) == b""
    assert _answer(client)["error_type"] == "RequestTimeout"


PID_APP = """
import os

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


def test_kept_alive_connections_are_spread_over_the_workers(tmp_path):
    """Eight kept-alive connections opened one after another to two workers: four each, not all on whichever
    worker woke first (gthread alone put all of them on one worker in the serving benchmarks)."""
    import http.client
    import os
    import subprocess
    import sys

    (tmp_path / "pid_app.py").write_text(PID_APP)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}",
               "-k", "byoc_runtime.server_worker.ThreadWorker", "pid_app:app"]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        workers: set[str] = set()
        while len(workers) < 2 and time.monotonic() < deadline:  # both workers up: each has answered once
            try:
                probe_connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                probe_connection.request("GET", "/")
                workers.add(probe_connection.getresponse().read().decode())
                probe_connection.close()
            except OSError:
                time.sleep(0.1)
        assert len(workers) == 2, "the two workers never both answered"
        time.sleep(1.5)  # the probes' connections are closed and counted off (gthread's loop turns each second)
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(8)]
        owners = []
        for connection in connections:
            connection.request("GET", "/")
            owners.append(connection.getresponse().read().decode())
        for connection in connections:  # the same connections again: kept alive, still on the same workers
            connection.request("GET", "/")
            assert connection.getresponse().read().decode() in workers
        assert sorted(owners.count(pid) for pid in workers) == [4, 4], owners
        for connection in connections:
            connection.close()
    finally:
        server.terminate()
        server.wait(30)


def test_a_busy_kept_alive_connection_does_not_keep_the_only_thread_from_another(tmp_path):
    """One worker, one thread: the thread lingers on a connection for its next request (item 5), but hands it
    back as soon as another connection waits, so a second client is answered while the first keeps sending."""
    import email.utils
    import http.client
    import os
    import subprocess
    import sys
    import threading

    (tmp_path / "pid_app.py").write_text(PID_APP)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A long linger: the busy connection's next request always comes within it, so only the hand-back is tested
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "BYOC_KEEPALIVE_LINGER_MS": "2000"}
    command = [sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "1", "-b", f"127.0.0.1:{port}",
               "-k", "byoc_runtime.server_worker.ThreadWorker", "pid_app:app"]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                busy = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                busy.request("GET", "/")
                response = busy.getresponse()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.1)
        response.read()
        date = email.utils.parsedate_to_datetime(response.getheader("Date")).timestamp()
        assert abs(date - time.time()) < 5  # the Date header, formatted once a second, is still current
        stop, answered = threading.Event(), []

        def keep_sending():
            while not stop.is_set():
                busy.request("GET", "/")
                answered.append(busy.getresponse().read())

        sender = threading.Thread(target=keep_sending)
        sender.start()
        time.sleep(0.3)
        other = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        started = time.monotonic()
        for _ in range(5):  # the other client's requests each wait for at most one of the busy one's
            other.request("GET", "/")
            assert other.getresponse().read()
        waited = time.monotonic() - started
        stop.set()
        sender.join(10)
        assert waited < 1.0, f"the second connection waited {waited:.2f} s for the thread"
        assert len(answered) > 20  # and the first kept being answered meanwhile
    finally:
        server.terminate()
        server.wait(30)
