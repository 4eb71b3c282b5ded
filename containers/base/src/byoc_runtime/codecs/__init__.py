"""Codecs chosen by Content-Type (requests) and Accept (responses); one module per format.

`decode(body, content_type)` and `encode(data, accept)` raise UnsupportedMediaType / NotAcceptable for
formats we do not speak and BadRequest for bodies that do not parse. NPY is read without pickle.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ..errors import BadRequest, NotAcceptable, UnsupportedMediaType
from . import csv_codec, json_codec, jsonlines_codec, npy_codec, recordio_protobuf

JSON = "application/json"
CSV = "text/csv"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
RECORDIO = "application/x-recordio-protobuf"

# media type (lower case, no parameters) -> codec module with decode(bytes) and encode(obj)
_CODECS: dict[str, ModuleType] = {
    JSON: json_codec,
    CSV: csv_codec,
    "application/csv": csv_codec,
    JSONLINES: jsonlines_codec,
    "application/jsonl": jsonlines_codec,
    "application/x-jsonlines": jsonlines_codec,
    NPY: npy_codec,
    "application/npy": npy_codec,
    RECORDIO: recordio_protobuf,
}


def media_type(header: str | None) -> str:
    """'Application/JSON; charset=utf-8' -> 'application/json'."""
    return (header or "").split(";", 1)[0].strip().lower()


def supported_types() -> list[str]:
    return sorted(_CODECS)


def is_supported(content_type: str | None) -> bool:
    return media_type(content_type) in _CODECS


def decode(body: bytes, content_type: str | None) -> Any:
    kind = media_type(content_type)
    codec = _CODECS.get(kind)
    if codec is None:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; use one of: {', '.join(supported_types())}"
        )
    try:
        return codec.decode(body)
    except BadRequest:
        raise
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as err:
        raise BadRequest(f"Could not parse the {kind} body: {err}") from None
    except RecursionError:
        raise BadRequest(f"Could not parse the {kind} body: it is nested too deeply") from None


def encode(data: Any, accept: str) -> bytes:
    kind = media_type(accept)
    codec = _CODECS.get(kind)
    if codec is None:
        raise NotAcceptable(f"Accept {accept!r} is not supported; use one of: {', '.join(supported_types())}")
    try:
        return codec.encode(data)
    except json_codec.NonFiniteValue as err:
        # Finite inputs checked on the way in: an overflow means they lie far outside what the model knows.
        raise BadRequest(f"{err}: the input is outside the range this model can answer for") from None


def negotiate(accept: str | None, offered: list[str] | None = None, default: str = JSON) -> str:
    """Pick the response type: the client's most preferred type among `offered` (default: all we encode).
    `offered=["*/*"]` takes any type the client names (a user's output_fn decides what it can write)."""
    offered = offered or supported_types()
    if not accept or not accept.strip():
        return default
    anything = offered == ["*/*"]
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        kind = media_type(part)
        quality = 1.0
        for param in part.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        choices.append((-quality, position, kind))
    for negative_quality, _, kind in sorted(choices):
        if negative_quality >= 0:
            continue
        if kind in ("*/*", "application/*") or not kind:
            return default if default in offered or anything else offered[0]
        if kind in offered or anything:
            return kind
    raise NotAcceptable(f"Accept {accept!r} is not supported; use one of: {', '.join(offered)}")


def predictions_of(data: Any) -> Any:
    """The list inside {"predictions": [...]}, else the data itself (for row-wise formats)."""
    if isinstance(data, dict) and "predictions" in data:
        return data["predictions"]
    return data


def instances_of(data: Any) -> Any:
    """Unwrap the request envelopes SageMaker clients send: {"instances": [...]} or TF-Serving {"inputs": ...}."""
    if isinstance(data, dict):
        for key in ("instances", "inputs"):
            if key in data:
                return data[key]
    return data
