"""HTTP/1.1 on a raw socket, one connection per request: the soak needs what a polite client library will not
do (cut a body off mid-stream, trickle the headers, send chunked bodies) and the same client for the rest.
Responses are parsed by the standard library's http.client."""

from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    kind: str  # the class of input, e.g. "json rating" or "bad: deep nesting"
    body: bytes = b""
    content_type: str | None = "application/json"
    accept: str | None = None
    method: str = "POST"
    path: str = "/invocations"
    mode: str = "normal"  # normal | chunked | cut-off | trickle | raw (the body is the whole request, as is)
    good: bool = False


@dataclass
class Outcome:
    status: int | None  # None: no response (reset, refused, timeout, closed)
    body: bytes
    content_type: str | None
    started: float
    ended: float
    error: str | None = None


def _head(request: Request, host: str, length: int | None) -> bytes:
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    if request.content_type is not None:
        lines.append(f"Content-Type: {request.content_type}")
    if request.accept is not None:
        lines.append(f"Accept: {request.accept}")
    if request.mode == "chunked":
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def send(request: Request, host: str, port: int, timeout: float) -> Outcome:
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if request.mode == "raw":
                sock.sendall(request.body)
                return _read(sock, started)
            if request.mode == "trickle":
                return _trickle(sock, request, host, started, timeout)
            if request.mode == "cut-off":
                # Announce the whole body, send a third of it, close: the server must shrug it off.
                sock.sendall(_head(request, host, len(request.body)) + request.body[: len(request.body) // 3])
                sock.shutdown(socket.SHUT_RDWR)
                return Outcome(None, b"", None, started, time.monotonic(), "closed by the client (by design)")
            if request.mode == "chunked":
                payload = b"".join(
                    f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                    for chunk in (request.body[i : i + 65536] for i in range(0, len(request.body), 65536))
                )
                sock.sendall(_head(request, host, None) + payload + b"0\r\n\r\n")
            else:
                sock.sendall(_head(request, host, len(request.body)) + request.body)
            return _read(sock, started)
    except (OSError, http.client.HTTPException) as err:
        return Outcome(None, b"", None, started, time.monotonic(), f"{type(err).__name__}: {err}")


def _read(sock: socket.socket, started: float) -> Outcome:
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        body = response.read()
    finally:
        response.close()
    return Outcome(response.status, body, response.getheader("Content-Type"), started, time.monotonic())


def _trickle(sock: socket.socket, request: Request, host: str, started: float, timeout: float) -> Outcome:
    """A slow client: the request head one byte every 0.2 s, for at most `timeout` seconds. The server may cut
    it off (answering or not); what matters is that it keeps serving everyone else meanwhile."""
    head = _head(request, host, len(request.body))
    for byte in head:
        if time.monotonic() - started > timeout:
            return Outcome(None, b"", None, started, time.monotonic(), "still trickling at the client's timeout")
        try:
            sock.sendall(bytes([byte]))
        except OSError as err:
            return Outcome(None, b"", None, started, time.monotonic(), f"cut off by the server: {err}")
        time.sleep(0.2)
    sock.sendall(request.body)
    return _read(sock, started)
