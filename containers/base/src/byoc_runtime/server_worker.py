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
4. Connections spread over the workers. Every gthread worker polls the shared listening socket and whichever
   wakes first accepts; a worker already busy tends to win again, so a client with a few kept-alive
   connections (SageMaker's front end, a load generator) can end up with all of them on one worker and one
   core while the others idle. Here each worker publishes its open connections in memory shared by the
   workers (ConnectionCounts) and leaves a new connection to a worker with fewer, for at most DEFER_SECONDS.
   A worker still loading its model (a replacement for one that died) counts as full: its connections would
   wait for the load, so the ready workers take them.
5. Less work per request on kept-alive connections. After answering, a thread waits up to LINGER_SECONDS for
   the connection's next request and serves it itself, instead of handing the connection back to the poller
   (two epoll changes, a wake-up of the main thread, a queue hand-off and a wake-up of a pool thread per
   request); only while no other connection waits for a thread. The Date header is formatted once a second,
   not per response (gunicorn's formatting cost as much as our whole app for a small model), and the
   heartbeat the arbiter watches is written at most every HEARTBEAT_SECONDS, not on every turn of the loop.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import select
import selectors
import socket
import time
from functools import partial

from gunicorn import util as gunicorn_util
from gunicorn.http import errors as http_errors
from gunicorn.workers import gthread

log = logging.getLogger(__name__)
HEADER_TIMEOUT = float(os.environ.get("BYOC_REQUEST_HEADER_TIMEOUT") or 10)
BODY_TIMEOUT = float(os.environ.get("BYOC_REQUEST_BODY_TIMEOUT") or 60)
SLICE = 0.5  # seconds a read blocks at most before it looks at the deadline and at shutdown again
STOP_HEAD_GRACE = 1.0  # seconds a stopping worker still waits for a request head that has not arrived
HEAD_END = b"\r\n\r\n"
DEFER_SECONDS = 0.02  # a worker leaves a new connection to a less busy one for at most this long
NOT_READY = 2**40  # the connections a worker still loading its model counts as holding
LINGER_SECONDS = float(os.environ.get("BYOC_KEEPALIVE_LINGER_MS") or 2) / 1000
HEARTBEAT_SECONDS = 0.5  # well inside gunicorn's worker timeout (SAGEMAKER_MODEL_SERVER_TIMEOUT, >= 1 s)
_format_http_date = gunicorn_util.http_date
_date_cache: tuple[int, str] = (0, "")


def _http_date(timestamp: float | None = None) -> str:
    """gunicorn's http_date, formatted once per second (responses within a second share their Date)."""
    global _date_cache
    if timestamp is not None:
        return _format_http_date(timestamp)
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        cached = _date_cache = (now, _format_http_date(now))
    return cached[1]


gunicorn_util.http_date = _http_date  # gunicorn.http.wsgi calls util.http_date() for every response


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


def _wait_readable(sock: socket.socket, timeout: float) -> bool:
    """Whether `sock` became readable (data, or the peer's end) within `timeout` seconds."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(timeout * 1000))


class ConnectionCounts:
    """Each worker's open connections, in anonymous shared memory made before the workers are forked (this
    module is imported by gunicorn's arbiter): slots of (pid, connections), a slot taken by a new worker
    from a worker that has exited."""

    SLOTS = 256

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, self.SLOTS * 2 * 8)
        self._slots = memoryview(self._memory).cast("q")
        self._mine: int | None = None

    def claim(self) -> None:
        """Take a slot for this process (called in the worker once forked)."""
        pid = os.getpid()
        for slot in range(self.SLOTS):
            owner = self._slots[2 * slot]
            if owner == 0 or (owner != pid and not _alive(owner)):
                self._slots[2 * slot], self._slots[2 * slot + 1] = pid, 0
                if self._slots[2 * slot] == pid:  # another worker claiming at the same moment wrote last
                    self._mine = slot
                    return

    def publish(self, connections: int) -> None:
        if self._mine is not None:
            self._slots[2 * self._mine + 1] = connections

    def fewest_elsewhere(self) -> int | None:
        """The fewest connections a live other worker holds (None: no other worker)."""
        counts = [
            self._slots[2 * slot + 1]
            for slot in range(self.SLOTS)
            if slot != self._mine and self._slots[2 * slot] and _alive(self._slots[2 * slot])
        ]
        return min(counts) if counts else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


CONNECTIONS = ConnectionCounts()


class ThreadWorker(gthread.ThreadWorker):
    stopping_since: float | None = None
    _deferring_since: float | None = None  # when this worker began leaving the pending connection to others
    _deferred_at = 0.0
    _notified_at = 0.0

    def notify(self) -> None:
        now = time.monotonic()
        if now - self._notified_at >= min(HEARTBEAT_SECONDS, self.timeout / 4):
            self._notified_at = now
            super().notify()

    def init_process(self) -> None:
        CONNECTIONS.claim()
        super().init_process()

    def accept(self, server, listener) -> None:
        """Accept, unless another worker holds fewer connections: it is woken by the same connection and takes
        it (a worker that has waited DEFER_SECONDS takes it anyway)."""
        fewest = CONNECTIONS.fewest_elsewhere()
        if fewest is not None and self._load() > fewest and self.stopping_since is None:
            now = time.monotonic()
            if self._deferring_since is None or now - self._deferred_at > 0.005:  # a new connection
                self._deferring_since = now
            self._deferred_at = now
            if now - self._deferring_since < DEFER_SECONDS:
                time.sleep(0.0005)  # the listener stays readable until someone accepts: do not spin on it
                return
        self._deferring_since = None
        super().accept(server, listener)
        CONNECTIONS.publish(self._load())

    def _load(self) -> int:
        """The connections this worker holds, for ConnectionCounts: NOT_READY while its model loads."""
        ready = getattr(self.wsgi, "ready", True)  # an app without the property is always ready
        return self.nr_conns if ready else NOT_READY

    def handle_exit(self, sig, frame) -> None:
        # gthread's would set alive = False and drop what it has accepted; drain it first (murder_keepalived,
        # called on every turn of gthread's loop, does that and ends the loop when nothing is left).
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()

    def murder_keepalived(self) -> None:
        if self.stopping_since is not None:
            self._drain()
        super().murder_keepalived()
        CONNECTIONS.publish(self._load())  # every turn of gthread's loop: closed connections count off

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
        while True:
            conn.sock.start_request()  # every request of a kept-alive connection gets its own deadline
            try:
                result = super().handle(conn)
            finally:
                conn.sock.flush()
            if not (result[0] and self._next_request_arrives(conn)):
                return result

    def _next_request_arrives(self, conn) -> bool:
        """Whether this thread should serve the connection's next request itself: it arrived within
        LINGER_SECONDS, no other connection waits for a thread, and the worker is not stopping."""
        if LINGER_SECONDS <= 0 or self.stopping_since is not None or not self.alive:
            return False
        if self.tpool._work_queue.qsize():  # others wait for a thread: hand this connection back
            return False
        return _wait_readable(conn.sock, LINGER_SECONDS)

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
