"""The handler convention of the SageMaker framework containers.

model_fn(model_dir) -> model; input_fn(body, content_type) -> data; predict_fn(data, model) -> prediction;
output_fn(prediction, accept) -> bytes | (bytes, content_type); or transform_fn(model, body, content_type,
accept) doing all three. Optional: predict_batch_fn(inputs, model) -> predictions, one per input, which the
runtime calls with the inputs of requests that reach the model together (batching.py). Resolution order,
last wins: runtime defaults < the family (BYOC_SERVE) < the user's inference.py (SAGEMAKER_PROGRAM in
SAGEMAKER_SUBMIT_DIRECTORY, or <model_dir>/code/inference.py).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from . import codecs
from .serving_settings import ServingSettings
from .user_code import load_module

log = logging.getLogger(__name__)
HANDLER_NAMES = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn", "predict_batch_fn")
# A predict_batch_fn belongs with the model, input and predict functions of its own module: a later module
# replacing any of them without its own predict_batch_fn drops the inherited one.
_BATCH_PARTNERS = ("model_fn", "input_fn", "predict_fn", "transform_fn")


def default_model_fn(model_dir: str) -> Any:
    raise NotImplementedError(
        "This image has no model_fn: set BYOC_SERVE to a family module or provide inference.py with model_fn"
    )


def default_input_fn(body: bytes, content_type: str) -> Any:
    return codecs.decode(body, content_type)


def default_predict_fn(data: Any, model: Any) -> Any:
    if hasattr(model, "predict"):
        return model.predict(data)
    if callable(model):
        return model(data)
    raise TypeError(f"the model ({type(model).__name__}) has no predict(); provide predict_fn")


def default_output_fn(prediction: Any, accept: str) -> bytes:
    return codecs.encode(prediction, accept)


@dataclass(frozen=True)
class Handlers:
    model_fn: Callable[[str], Any] = default_model_fn
    input_fn: Callable[[bytes, str], Any] = default_input_fn
    predict_fn: Callable[[Any, Any], Any] = default_predict_fn
    output_fn: Callable[[Any, str], Any] = default_output_fn
    transform_fn: Callable[[Any, bytes, str, str], Any] | None = None
    predict_batch_fn: Callable[[list[Any], Any], list[Any]] | None = None
    # Response types the output side can produce; None = whatever the client asks for (a user output_fn).
    accepts: tuple[str, ...] | None = tuple(codecs.supported_types())
    source: str = "runtime defaults"

    def overridden_by(self, module: ModuleType) -> Handlers:
        found = {name: getattr(module, name) for name in HANDLER_NAMES if callable(getattr(module, name, None))}
        if not found:
            return self
        if hasattr(module, "ACCEPTS"):
            accepts = tuple(module.ACCEPTS) if module.ACCEPTS else None
        elif "output_fn" in found or "transform_fn" in found:
            accepts = None  # the module encodes responses itself: pass the client's type through
        else:
            accepts = self.accepts
        if "predict_batch_fn" not in found and any(name in found for name in _BATCH_PARTNERS):
            found["predict_batch_fn"] = None
        return replace(self, **found, accepts=accepts, source=module.__name__)


def resolve(settings: ServingSettings) -> Handlers:
    handlers = Handlers()
    if settings.family:
        handlers = handlers.overridden_by(importlib.import_module(settings.family))
    script = find_user_script(settings)
    if script is not None:
        log.info("using handlers from %s", script)
        handlers = handlers.overridden_by(load_module(script))
    return handlers


def find_user_script(settings: ServingSettings) -> Path | None:
    if settings.program:
        base = Path((settings.submit_directory or str(settings.model_dir / "code")).removeprefix("file://"))
        candidate = base / settings.program
        if candidate.is_file():
            return candidate
        log.warning("SAGEMAKER_PROGRAM=%s not found in %s; ignoring it", settings.program, base)
    default = settings.model_dir / "code" / "inference.py"
    return default if default.is_file() else None
