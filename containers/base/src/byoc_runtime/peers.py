"""Heartbeats between the hosts of a multi-host training job, so that a job whose peer died stops.

MXNet's ps-lite has no failure detection: when a host dies, the survivors block in the kvstore for ever and the
job bills until its MaxRuntimeInSeconds (a day by default). TensorFlow notices within seconds but names a task
(/job:worker/task:1), not a host. So the `train` supervisor of every host (not the trainer, which may be stuck
in a collective and unable to answer) serves its state on BYOC_HEARTBEAT_PORT (9099) and asks every peer for
its state each second:

- a peer never reached within BYOC_STARTUP_TIMEOUT seconds (default 300) of this host's start: it never came
  up (its container failed to start, or the network between the hosts is closed);
- a peer that answered once and then not for BYOC_PEER_TIMEOUT seconds (default 30): it was lost;
- a peer that answers that its training failed: the job cannot finish (its reason is passed on);
- a peer that answers that it finished: fine, whether or not it answers afterwards.

The supervisor then stops its trainer and writes the failure naming the host. A host that has finished keeps
answering a few seconds more, until every peer has seen its final state.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
DEFAULT_PORT = 9099
DEFAULT_PEER_TIMEOUT = 30.0
DEFAULT_STARTUP_TIMEOUT = 300.0
INTERVAL = 1.0  # seconds between two rounds of asking the peers
CONNECT_TIMEOUT = 1.0
FINAL_LINGER = 15.0  # seconds at most a finished host waits for its peers to see that it has finished


@dataclass(frozen=True)
class Timeouts:
    peer: float = DEFAULT_PEER_TIMEOUT
    startup: float = DEFAULT_STARTUP_TIMEOUT
    port: int = DEFAULT_PORT

    @classmethod
    def from_env(cls, environ=os.environ) -> Timeouts:
        return cls(
            peer=float(environ.get("BYOC_PEER_TIMEOUT") or DEFAULT_PEER_TIMEOUT),
            startup=float(environ.get("BYOC_STARTUP_TIMEOUT") or DEFAULT_STARTUP_TIMEOUT),
            port=int(environ.get("BYOC_HEARTBEAT_PORT") or DEFAULT_PORT),
        )


def startup_timeout(environ=os.environ) -> float:
    """How long anything waiting for another host to come up may wait (also DNS and the TensorFlow chief)."""
    return Timeouts.from_env(environ).startup


@dataclass
class Peer:
    host: str
    state: str = "unseen"  # unseen | running | done | failed
    detail: str = ""
    last_answer: float | None = None
    saw_our_end: bool = False  # asked us after we finished


class PeerWatch:
    """Serve this host's state and watch the peers' (see the module docstring). `on_problem(reason)` is called
    once, from the watch thread, with a one-line reason naming the host."""

    def __init__(
        self,
        hosts: list[str],
        current_host: str,
        timeouts: Timeouts | None = None,
        on_problem: Callable[[str], None] | None = None,
        interval: float = INTERVAL,
        bind: str = "",
    ):
        self.current_host, self.timeouts, self.interval = current_host, timeouts or Timeouts(), interval
        self.peers = {host: Peer(host) for host in hosts if host != current_host}
        self.on_problem = on_problem
        self.problem: str | None = None
        self._state, self._state_lock = "running", threading.Lock()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._server = socket.create_server((bind, self.timeouts.port))
        self._server.settimeout(0.5)
        self._threads = [
            threading.Thread(target=self._serve, name="heartbeat-server", daemon=True),
            threading.Thread(target=self._watch, name="heartbeat-watch", daemon=True),
        ]

    def start(self) -> PeerWatch:
        log.info(
            "watching hosts %s on port %d (lost after %g s without an answer, %g s to come up)",
            ", ".join(self.peers),
            self.timeouts.port,
            self.timeouts.peer,
            self.timeouts.startup,
        )
        for thread in self._threads:
            thread.start()
        return self

    # ------------------------------------------------------------------ this host's side
    def finish(self, succeeded: bool, reason: str = "") -> None:
        """Training ended here: answer peers with the outcome until each has seen it (or FINAL_LINGER)."""
        with self._state_lock:
            self._state = "done" if succeeded else f"failed {' '.join(reason.split())[:300]}"
        deadline = time.monotonic() + FINAL_LINGER
        while time.monotonic() < deadline:
            if all(p.saw_our_end or p.state in ("done", "failed") or self._gone(p) for p in self.peers.values()):
                break
            time.sleep(0.1)
        self.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._server.close()

    def _gone(self, peer: Peer) -> bool:
        last = peer.last_answer or self._started
        return time.monotonic() - last > 3 * self.interval

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                try:
                    connection.settimeout(1.0)
                    asker = connection.recv(256).decode("utf-8", "replace").strip()
                    with self._state_lock:
                        state = self._state
                    connection.sendall(f"{self.current_host} {state}\n".encode())
                    if state != "running" and asker in self.peers:
                        self.peers[asker].saw_our_end = True
                except OSError:
                    pass

    # ------------------------------------------------------------------ the peers' side
    def _ask(self, peer: Peer) -> str | None:
        try:
            with socket.create_connection((peer.host, self.timeouts.port), timeout=CONNECT_TIMEOUT) as connection:
                connection.sendall(f"{self.current_host}\n".encode())
                answer = connection.recv(1024).decode("utf-8", "replace").strip()
        except OSError:  # refused, unreachable, unresolvable (a stopped container's name is gone), timed out
            return None
        host, _, state = answer.partition(" ")
        return state if host == peer.host and state else None

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            for peer in self.peers.values():
                if peer.state in ("done", "failed"):
                    continue
                answer = self._ask(peer)
                if answer is not None:
                    peer.last_answer = time.monotonic()
                    peer.state, _, peer.detail = answer.partition(" ")
            if self.problem is None:
                self.problem = self._problem()
                if self.problem is not None:
                    log.error("%s", self.problem)
                    if self.on_problem is not None:
                        self.on_problem(self.problem)

    def _problem(self) -> str | None:
        with self._state_lock:
            if self._state != "running":
                return None
        now = time.monotonic()
        for peer in self.peers.values():
            if peer.state == "failed":
                because = f": {peer.detail}" if peer.detail else ""
                return f"Host {peer.host} of the training cluster failed, so this job cannot finish{because}"
            if peer.state == "unseen" and now - self._started > self.timeouts.startup:
                return (
                    f"Host {peer.host} of the training cluster did not come up within {self.timeouts.startup:g} s "
                    f"(BYOC_STARTUP_TIMEOUT): its container never answered on port {self.timeouts.port}"
                )
            if peer.state == "running" and now - peer.last_answer > self.timeouts.peer:
                return (
                    f"Lost host {peer.host} of the training cluster: no answer for {self.timeouts.peer:g} s "
                    "(BYOC_PEER_TIMEOUT); it stopped, was killed or lost its network"
                )
        return None
