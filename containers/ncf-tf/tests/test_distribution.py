"""Parameter-server helpers without TensorFlow: the cluster layout and how ps/worker tasks learn the chief is done."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from byoc_runtime import distributed
from byoc_runtime.errors import TrainingError
from ncf_tf import distribution


class FakeEnv:
    def __init__(self, host):
        self.hosts, self.current_host = ["algo-1", "algo-2", "algo-3"], host

    @property
    def is_master(self):
        return self.current_host == self.hosts[0]

    @property
    def host_rank(self):
        return self.hosts.index(self.current_host)


def test_parameter_server_cluster_has_a_chief_workers_and_a_ps_per_host():
    config = distributed.tf_config(FakeEnv("algo-3"), parameter_servers=True)
    assert config["cluster"] == {
        "chief": ["algo-1:2222"],
        "worker": ["algo-2:2222", "algo-3:2222"],
        "ps": ["algo-1:2223", "algo-2:2223", "algo-3:2223"],
    }
    assert config["task"] == {"type": "worker", "index": 1}


def test_chief_done_waits_for_the_chief_to_come_and_go():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def accept_then_close():
        listener.settimeout(0.2)
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            try:
                listener.accept()[0].close()
            except TimeoutError:
                pass
        listener.close()

    threading.Thread(target=accept_then_close, daemon=True).start()
    started = time.monotonic()
    distribution.chief_done(f"127.0.0.1:{port}", appear_timeout=5, poll=0.1)
    assert 0.5 < time.monotonic() - started < 5


def test_a_chief_that_never_comes_up_is_an_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(TrainingError, match="did not come up"):
        distribution.chief_done(f"127.0.0.1:{port}", appear_timeout=0.3, poll=0.1)
