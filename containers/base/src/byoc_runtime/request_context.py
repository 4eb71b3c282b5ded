"""The request being answered, for handlers that need more of it than its media types: SageMaker's
CustomAttributes, parameters of the Accept header, TF Serving's model selection. The app sets it around each
invocation (per thread: a gthread worker answers several requests at once); outside a request it is empty."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_environ: ContextVar[Mapping[str, Any] | None] = ContextVar("byoc_request_environ", default=None)
_UNPREFIXED = ("CONTENT_TYPE", "CONTENT_LENGTH")  # the two headers WSGI keeps without HTTP_


def environ_key(name: str) -> str:
    """The WSGI environ key of a header: Content-Type -> CONTENT_TYPE, Accept -> HTTP_ACCEPT."""
    key = name.upper().replace("-", "_")
    return key if key in _UNPREFIXED else f"HTTP_{key}"


@contextmanager
def active(environ: Mapping[str, Any]) -> Iterator[None]:
    """Within this block, header() answers from `environ` (a WSGI environ)."""
    token = _environ.set(environ)
    try:
        yield
    finally:
        _environ.reset(token)


@contextmanager
def headers(values: Mapping[str, str]) -> Iterator[None]:
    """Within this block, header() answers from these headers (for calling handlers outside the server)."""
    with active({environ_key(name): value for name, value in values.items()}):
        yield


def header(name: str) -> str | None:
    """A header of the request being answered (repeated headers joined by commas); None outside a request."""
    environ = _environ.get()
    return None if environ is None else environ.get(environ_key(name))
