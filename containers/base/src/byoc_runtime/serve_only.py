"""Serve-only images (`./build.sh build FAMILY --serve`): the family's model served on byoc-base, without its
training framework. The family's serving module picks its framework-free path when the framework is not
installed (`framework_missing`); what only the framework can do is answered `NeedsFramework` (501), and
`train` says which image trains.
"""

from __future__ import annotations

import importlib.util
import os

from .errors import InvocationError, TrainingError

IMAGE_ENV = "BYOC_SERVE_ONLY"  # set by a family's Dockerfile.serve to the family's image name, e.g. byoc-fm


class NeedsFramework(InvocationError):
    """A request (or a model) that only the family's full image, with its framework, can serve."""

    status = 501
    error_type = "NeedsFramework"


def framework_missing(module: str) -> bool:
    """True when `module` (mxnet, tensorflow) cannot be imported here: the serve-only image."""
    return importlib.util.find_spec(module) is None


def full_image() -> str:
    """The image that has the framework, for messages: this image's tag without -serve."""
    name = os.environ.get(IMAGE_ENV)
    return f"{name}:<version>-cpu (this tag without -serve)" if name else "the family's full image"


def needs_framework(what: str, framework: str) -> NeedsFramework:
    return NeedsFramework(
        f"{what} needs {framework}, which this serve-only image does not have: serve this model with "
        f"{full_image()} (the full image, same model.tar.gz)"
    )


def train(env) -> None:  # BYOC_TRAIN of every serve-only image
    raise TrainingError(
        f"This is a serve-only image (no training framework): train with {full_image()}, then serve its "
        "model.tar.gz with this image or that one"
    )
