"""The gunicorn worker class of `serve`: gunicorn's gthread worker plus two things a server facing arbitrary
clients needs and gthread lacks.

1. A deadline on reading each request. gthread hands a connection to a thread as soon as its first byte
   arrives and the thread then reads the request in blocking calls: a client trickling its headers (a byte
   now and then) holds that thread for ever, and a handful of such clients stall the worker; a SIGTERM then
   waits for them for the whole graceful timeout. Here the request head must arrive within
   BYOC_REQUEST_HEADER_TIMEOUT seconds (default 10; the answer is a 408), the body within
   BYOC_REQUEST_BODY_TIMEOUT (default 60, SageMaker's invocation timeout).
2. A stop that loses nothing. On SIGTERM gthread leaves its loop at once: connections it has accepted whose
   request has not been read yet are closed unanswered, and those still in the listen backlog are reset.
   Here a stopping worker first accepts what is in the backlog, stops listening, answers every request it
   has (a connection's request head gets STOP_HEAD_GRACE seconds more to arrive, then a 503), closes idle
   kept-alive connections, and only then exits (within gunicorn's graceful timeout in any case).
3. JSON error bodies for the requests gunicorn refuses itself (malformed request line or headers, headers
   too large), like every other error of ours; gunicorn writes HTML, and logs each at WARNING.
"""

from __future__ import annotations

import json
import logging
import os
import select
import selectors
import socket
import time
from functools import partial

from gunicorn.http import errors as http_errors
from gunicorn.workers import gthread

log = logging.getLogger(__name__)
HEADER_TIMEOUT = float(os.environ.get("BYOC_REQUEST_HEADER_TIMEOUT") or 10)
BODY_TIMEOUT = float(os.environ.get("BYOC_REQUEST_BODY_TIMEOUT") or 60)
SLICE = 0.5  # seconds a read blocks at most before it looks at the deadline and at shutdown again
STOP_HEAD_GRACE = 1.0  # seconds a stopping worker still waits for a request head that has not arrived
HEAD_END = b"\r\n\r\n"


def _json_response(status: int, reason: str, message: str, error_type: str) -> bytes:
    body = json.dumps({"error": message, "error_type": error_type}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class DeadlineSocket:
    """A client socket whose reads stop at a per-request deadline: past it, a read returns b"" (end of
    stream), which gunicorn's parser treats as a client that went away. Everything else passes through."""

    def __init__(self, sock: socket.socket, worker: ThreadWorker):
        self._sock, self._worker = sock, worker
        self._requests = 0
        # The first head's clock starts when its first bytes arrive, not when a thread gets to it: clients
        # queued behind slow ones must not each get a fresh allowance.
        self._in_head, self._tail = True, b""
        self._deadline = time.monotonic() + HEADER_TIMEOUT
        self._held = b""  # a response head waiting for its body (sendall)

    def start_request(self) -> None:
        """A thread starts reading a request of this connection; a kept-alive connection's next one gets its
        own deadline."""
        if self._requests:
            self._in_head, self._tail = True, b""
            self._deadline = time.monotonic() + HEADER_TIMEOUT
        self._requests += 1

    def recv(self, size: int, *flags: int) -> bytes:
        while True:
            stopping = self._worker.stopping_since is not None
            deadline = self._deadline
            if self._in_head and stopping:
                deadline = min(deadline, self._worker.stopping_since + STOP_HEAD_GRACE)
            remaining = deadline - time.monotonic()
            if self._in_head and remaining <= 0:
                # The deadline judges the client, not our queue: a head that is all there, waiting in the socket
                # since before it (this connection sat behind busy threads), is read and answered.
                arrived = self._arrived_head(size)
                return arrived if arrived else self._refuse_head(stopping)
            if remaining <= 0:
                log.info("closed a connection that sent its request body too slowly (over %.0f s)", BODY_TIMEOUT)
                return b""
            # What has arrived is read at once (one system call, the usual case: the poller handed this connection
            # over because it was readable); otherwise wait for more, a slice at a time, in poll. The socket stays
            # blocking for gunicorn's writes.
            try:
                data = self._sock.recv(size, socket.MSG_DONTWAIT | (flags[0] if flags else 0))
            except (BlockingIOError, InterruptedError):
                _wait_readable(self._sock, min(remaining, SLICE))
                continue
            if self._in_head and HEAD_END in self._tail + data:
                self._in_head = False
                self._deadline = time.monotonic() + BODY_TIMEOUT
            self._tail = (self._tail + data)[-3:]
            return data

    def _arrived_head(self, size: int) -> bytes:
        """What the socket already holds, if it completes the request head; b"" otherwise (nothing is consumed)."""
        try:
            waiting = self._sock.recv(max(size, 65536), socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError, OSError):
            return b""
        if not waiting or HEAD_END not in self._tail + waiting:
            return b""
        data = self._sock.recv(size, socket.MSG_DONTWAIT)
        if HEAD_END in self._tail + data:
            self._in_head = False
            self._deadline = time.monotonic() + BODY_TIMEOUT
        self._tail = (self._tail + data)[-3:]
        return data

    def _refuse_head(self, stopping: bool) -> bytes:
        if stopping:
            answer = _json_response(503, "Service Unavailable", "The server is stopping", "ServiceUnavailable")
        else:
            message = f"The request head did not arrive within {HEADER_TIMEOUT:g} s"
            log.info("closed a connection: %s", message)
            answer = _json_response(408, "Request Timeout", message, "RequestTimeout")
        try:
            self._sock.settimeout(1.0)
            self._sock.sendall(answer)
        except OSError:
            pass
        return b""

    def sendall(self, data: bytes, *flags: int) -> None:
        """gunicorn writes a response's head and body in two calls; hold the head and send it with the body, in
        one system call and one packet. flush() sends a head still held (a response without a body)."""
        if self._held:
            data, self._held = self._held + data, b""
        elif data.startswith(b"HTTP/") and data.endswith(HEAD_END):
            self._held = bytes(data)
            return
        self._sock.sendall(data, *flags)

    def flush(self) -> None:
        if self._held:
            data, self._held = self._held, b""
            try:
                self._sock.sendall(data)
            except OSError:
                pass

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def _wait_readable(sock: socket.socket, timeout: float) -> None:
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    poller.poll(timeout * 1000)


class ThreadWorker(gthread.ThreadWorker):
    stopping_since: float | None = None

    def handle_exit(self, sig, frame) -> None:
        # gthread's would set alive = False and drop what it has accepted; drain it first (murder_keepalived,
        # called on every turn of gthread's loop, does that and ends the loop when nothing is left).
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()

    def murder_keepalived(self) -> None:
        if self.stopping_since is not None:
            self._drain()
        super().murder_keepalived()

    def _drain(self) -> None:
        now = time.monotonic()
        if self.sockets and self.sockets[0].sock is not None:
            self._stop_listening()
        for conn in list(self._keep):  # idle kept-alive connections: close them on this turn
            conn.timeout = 0
        waiting = self._waiting_connections()
        for conn in waiting:
            if now - self.stopping_since > STOP_HEAD_GRACE:
                self._close_waiting(conn)
        if (not self.futures and not waiting) or now - self.stopping_since > self.cfg.graceful_timeout:
            self.alive = False

    def _stop_listening(self) -> None:
        """Take over what the backlog holds (those clients are already waiting), then close the listeners:
        later connections are refused at once rather than accepted and dropped."""
        for listener in self.sockets:
            server = listener.getsockname()
            while True:
                try:
                    sock, client = listener.accept()
                except (BlockingIOError, InterruptedError, OSError):
                    break
                conn = gthread.TConn(self.cfg, sock, client, server)
                self.nr_conns += 1
                with self._lock:
                    self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
            with self._lock:
                try:
                    self.poller.unregister(listener)
                except (KeyError, ValueError):
                    pass
            listener.close()

    def _waiting_connections(self) -> list:
        """Accepted connections whose first request has not arrived yet (registered, not kept-alive ones)."""
        found = []
        with self._lock:
            for key in list(self.poller.get_map().values()):
                callback = key.data
                if isinstance(callback, partial) and callback.func == self.on_client_socket_readable:
                    conn = callback.args[0]
                    if not conn.initialized:
                        found.append(conn)
        return found

    def _close_waiting(self, conn) -> None:
        with self._lock:
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError):
                return
        self.nr_conns -= 1
        conn.close()

    def enqueue_req(self, conn) -> None:
        if not isinstance(conn.sock, DeadlineSocket):  # before init(): the parser must read through it
            conn.sock = DeadlineSocket(conn.sock, self)
        super().enqueue_req(conn)

    def handle(self, conn):
        conn.sock.start_request()  # every request of a kept-alive connection gets its own deadline
        try:
            return super().handle(conn)
        finally:
            conn.sock.flush()

    def handle_error(self, req, client, addr, exc) -> None:
        refused = _refusal(exc)
        if refused is None:  # not the client's doing: gunicorn logs the trace and answers 500
            super().handle_error(req, client, addr, exc)
            return
        status, reason, error_type = refused
        log.info("refused a malformed request: %s", exc)
        try:
            client.sendall(_json_response(status, reason, f"{reason}: {exc}", error_type))
        except OSError:
            pass


def _refusal(exc: Exception) -> tuple[int, str, str] | None:
    if isinstance(exc, http_errors.LimitRequestHeaders):
        return 431, "Request Header Fields Too Large", "RequestHeaderFieldsTooLarge"
    if isinstance(exc, http_errors.UnsupportedTransferCoding):
        return 501, "Not Implemented", "NotImplemented"
    if isinstance(exc, http_errors.ConfigurationProblem):
        return None
    if isinstance(exc, http_errors.ParseException | http_errors.NoMoreData):
        return 400, "Bad Request", "BadRequest"
    return None
