"""Heartbeats between training hosts (byoc_runtime.peers), in-process: two hosts on loopback addresses."""

import time

import pytest

from byoc_runtime.distributed import host_of_tf_task
from byoc_runtime.peers import PeerWatch, Timeouts

A, B = "127.0.0.1", "127.0.0.2"  # every 127/8 address is loopback on Linux: two "hosts", one port


def watch(me, port, problems, peer=2.0, startup=5.0):
    timeouts = Timeouts(peer=peer, startup=startup, port=port)
    return PeerWatch([A, B], me, timeouts, on_problem=problems.append, interval=0.1, bind=me).start()


def wait_for(condition, seconds=6.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_healthy_hosts_finish_without_a_problem(port):
    problems_a, problems_b = [], []
    a, b = watch(A, port, problems_a), watch(B, port, problems_b)
    assert wait_for(lambda: a.peers[B].state == "running" and b.peers[A].state == "running")
    b.finish(True)  # returns once A has seen that B finished
    assert a.peers[B].state == "done"
    time.sleep(0.5)  # B is gone now: a finished host may go
    assert problems_a == [] and problems_b == []
    a.finish(True)


def test_a_lost_host_is_named_after_the_peer_timeout(port):
    problems = []
    a, b = watch(A, port, problems, peer=1.0), watch(B, port, [])
    assert wait_for(lambda: a.peers[B].state == "running")
    lost_at = time.monotonic()
    b.close()  # the container died: no final state
    assert wait_for(lambda: problems, seconds=5)
    assert problems == [f"Lost host {B} of the training cluster: no answer for 1 s (BYOC_PEER_TIMEOUT); "
                        "it stopped, was killed or lost its network"]  # fmt: skip
    assert 0.9 < time.monotonic() - lost_at < 3
    a.close()


def test_a_host_that_never_comes_up_is_named_after_the_startup_timeout(port):
    problems = []
    started = time.monotonic()
    a = watch(A, port, problems, startup=1.0)
    assert wait_for(lambda: problems, seconds=5)
    assert problems[0].startswith(f"Host {B} of the training cluster did not come up within 1 s (BYOC_STARTUP_TIMEOUT)")
    assert time.monotonic() - started < 3
    a.close()


def test_a_failed_host_passes_its_reason_on(port):
    problems = []
    a, b = watch(A, port, problems), watch(B, port, [])
    assert wait_for(lambda: a.peers[B].state == "running")
    b.finish(False, "Channel 'train': data.rec is truncated: record 3 at byte 96")
    assert wait_for(lambda: problems)
    assert problems == [f"Host {B} of the training cluster failed, so this job cannot finish: Channel 'train': "
                        "data.rec is truncated: record 3 at byte 96"]  # fmt: skip
    a.close()


def test_tensorflow_tasks_are_named_by_their_host():
    config = {"cluster": {"worker": ["algo-1:2222", "algo-2:2222"]}, "task": {"type": "worker", "index": 0}}
    message = "UnavailableError: {{function_node __wrapped__CollectiveReduceV2}} ... /job:worker/replica:0/task:1"
    assert host_of_tf_task(message, config) == ("algo-2", "/job:worker/task:1")
    assert host_of_tf_task("Collective ops on /job:worker/task:0 and /job:worker/task:1", config) == (
        "algo-2",
        "/job:worker/task:1",
    )
    assert host_of_tf_task("nothing about tasks", config) is None


def test_the_line_of_a_tensorflow_collective_error_that_says_what_happened():
    from byoc_runtime.run_trainer import _peer_error_summary

    message = (
        "Graph execution error:\n\nDetected at node while/CollectiveReduceV2 defined at (most recent call last):\n"
        '  File "<frozen runpy>", line 198, in _run_module_as_main\n\n'
        "Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are unhealthy "
        "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed."
    )
    assert _peer_error_summary(message) == "The following tasks are unhealthy (stopped sending heartbeats):"
