"""The gunicorn worker class of `serve`: gunicorn's gthread worker plus two things a server facing arbitrary
clients needs and gthread lacks.

1. A deadline on reading each request. gthread hands a connection to a thread as soon as its first byte
   arrives and the thread then reads the request in blocking calls: a client trickling its headers (a byte
   now and then) holds that thread for ever, and a handful of such clients stall the worker; a SIGTERM then
   waits for them for the whole graceful timeout. Here the request head must arrive within
   BYOC_REQUEST_HEADER_TIMEOUT seconds (default 10; the answer is a 408), the body within
   BYOC_REQUEST_BODY_TIMEOUT (default 60, SageMaker's invocation timeout); a stopping worker closes a
   connection still sending its head at once (503) instead of waiting for it.
2. JSON error bodies for the requests gunicorn refuses itself (malformed request line or headers, headers
   too large), like every other error of ours; gunicorn writes HTML, and logs each at WARNING.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time

from gunicorn.http import errors as http_errors
from gunicorn.workers import gthread

log = logging.getLogger(__name__)
HEADER_TIMEOUT = float(os.environ.get("BYOC_REQUEST_HEADER_TIMEOUT") or 10)
BODY_TIMEOUT = float(os.environ.get("BYOC_REQUEST_BODY_TIMEOUT") or 60)
SLICE = 0.5  # seconds a read blocks at most before it looks at the deadline and at shutdown again
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
        self.start_request()

    def start_request(self) -> None:
        self._in_head, self._tail = True, b""
        self._deadline = time.monotonic() + HEADER_TIMEOUT

    def recv(self, size: int, *flags: int) -> bytes:
        while True:
            stopping = not self._worker.alive
            remaining = self._deadline - time.monotonic()
            if self._in_head and (remaining <= 0 or stopping):
                return self._refuse_head(stopping)
            if remaining <= 0:
                log.info("closed a connection that sent its request body too slowly (over %.0f s)", BODY_TIMEOUT)
                return b""
            self._sock.settimeout(min(remaining, SLICE))
            try:
                data = self._sock.recv(size, *flags)
            except TimeoutError:
                continue
            finally:
                self._sock.settimeout(None)
            if self._in_head and HEAD_END in self._tail + data:
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

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class ThreadWorker(gthread.ThreadWorker):
    def enqueue_req(self, conn) -> None:
        if not isinstance(conn.sock, DeadlineSocket):  # before init(): the parser must read through it
            conn.sock = DeadlineSocket(conn.sock, self)
        super().enqueue_req(conn)

    def handle(self, conn):
        conn.sock.start_request()  # every request of a kept-alive connection gets its own deadline
        return super().handle(conn)

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
