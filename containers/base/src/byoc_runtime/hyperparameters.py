"""Hyperparameters: decoded from SageMaker's string form, then validated against a family's spec.

SageMaker hands every value as a string; SDK >= 2.110 JSON-encodes them first ('"adam"', '0.1'),
older clients and the console do not ('adam', '0.1'). Both decode to the same Python value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import HyperparameterError

# Keys the SDK and toolkits reserve for themselves (script mode, distribution, ...).
FRAMEWORK_PREFIX = "sagemaker_"

_REQUIRED = object()


def decode_value(raw: Any) -> Any:
    """'0.1' -> 0.1, '"adam"' -> 'adam', 'adam' -> 'adam', '[1, 2]' -> [1, 2]; non-strings pass through."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def decode_all(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: decode_value(value) for key, value in raw.items()}


def split_framework(decoded: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(user hyperparameters, sagemaker_* framework parameters)."""
    user = {k: v for k, v in decoded.items() if not k.startswith(FRAMEWORK_PREFIX)}
    framework = {k: v for k, v in decoded.items() if k.startswith(FRAMEWORK_PREFIX)}
    return user, framework


@dataclass(frozen=True)
class Param:
    """One hyperparameter of a family: its type, default (absent = required), and bounds."""

    kind: type = str
    default: Any = _REQUIRED
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def coerce(self, name: str, value: Any) -> Any:
        value = _coerce(name, self.kind, value)
        if self.choices is not None and value not in self.choices:
            raise HyperparameterError(name, f"{value!r} is not one of {', '.join(map(str, self.choices))}")
        if self.kind is list:
            for item in value:
                self._check_bounds(name, item)
        else:
            self._check_bounds(name, value)
        return value

    def _check_bounds(self, name: str, value: Any) -> None:
        if not isinstance(value, int | float):
            return
        if self.min is not None and value < self.min:
            raise HyperparameterError(name, f"{value!r} is below the minimum {_number_text(self.min)} ({self.allowed})")
        if self.max is not None and value > self.max:
            raise HyperparameterError(name, f"{value!r} is above the maximum {_number_text(self.max)} ({self.allowed})")

    @property
    def allowed(self) -> str:
        """The allowed values in words, for messages: "allowed: 1 to 4096", "allowed: 0 or more"."""
        if self.choices is not None:
            return f"allowed: {', '.join(map(str, self.choices))}"
        low, high = _number_text(self.min), _number_text(self.max)
        if self.min is not None and self.max is not None:
            return f"allowed: {low} to {high}"
        if self.min is not None:
            return f"allowed: {low} or more"
        if self.max is not None:
            return f"allowed: {high} or less"
        return "allowed: any value"


def _number_text(bound: float | None) -> str:
    """1 for 1 and 1.0, 0.5 for 0.5, 1e-08 for 1e-8: a bound as a user would write it."""
    if bound is None:
        return ""
    if isinstance(bound, float) and bound.is_integer() and abs(bound) < 1e15:
        return str(int(bound))
    return str(bound)


def _coerce(name: str, kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise HyperparameterError(name, f"expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise HyperparameterError(name, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise HyperparameterError(name, f"expected an integer, got {value!r}") from None
        if not number.is_integer():
            raise HyperparameterError(name, f"expected an integer, got {value!r}")
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise HyperparameterError(name, f"expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise HyperparameterError(name, f"expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise HyperparameterError(name, f"expected a finite number, got {value!r}")
        return number
    if kind is list:
        # "64,32,16", "[64, 32, 16]" (already JSON-decoded to a list) or a single number.
        if isinstance(value, list):
            items = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            items = [value]
        else:
            items = [part.strip() for part in str(value).strip("[]").split(",") if part.strip()]
        try:
            return [_number(item) for item in items]
        except ValueError:
            raise HyperparameterError(name, f"expected a comma-separated list of numbers, got {value!r}") from None
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict | list) else str(value)


def _number(item: Any) -> int | float:
    number = float(item)
    return int(number) if number.is_integer() else number


def validate(decoded: Mapping[str, Any], spec: Mapping[str, Param], *, allow_unknown: bool = False) -> dict[str, Any]:
    """Apply defaults, coerce types, check bounds. Unknown or missing names raise HyperparameterError."""
    user, _ = split_framework(decoded)
    if not allow_unknown:
        for name in sorted(set(user) - set(spec)):
            raise HyperparameterError(name, f"unknown hyperparameter (known: {', '.join(sorted(spec))})")
    result: dict[str, Any] = {}
    for name, param in spec.items():
        if name in user:
            result[name] = param.coerce(name, user[name])
        elif param.required:
            raise HyperparameterError(name, "required but not set")
        else:
            result[name] = param.default
    if allow_unknown:
        result.update({k: v for k, v in user.items() if k not in spec})
    return result


def describe(spec: Mapping[str, Param]) -> str:
    """A Markdown table of a spec, for --help and family READMEs."""
    lines = ["| name | type | default | allowed | description |", "|---|---|---|---|---|"]
    for name, p in spec.items():
        default = "(required)" if p.required else repr(p.default)
        allowed = ", ".join(map(str, p.choices)) if p.choices else _range(p)
        lines.append(f"| {name} | {p.kind.__name__} | {default} | {allowed} | {p.help} |")
    return "\n".join(lines)


def _range(p: Param) -> str:
    if p.min is None and p.max is None:
        return ""
    return f"[{'' if p.min is None else p.min}, {'' if p.max is None else p.max}]"
