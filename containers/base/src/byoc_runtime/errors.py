"""Errors that carry their meaning: an HTTP status for serving, a user-facing reason for training."""

from __future__ import annotations


class InvocationError(Exception):
    """A request the server refuses; answered as JSON {"error", "error_type"} with `status`."""

    status = 500
    error_type = "InternalError"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}


class BadRequest(InvocationError):
    """The body could not be decoded or does not describe a valid input (wrong shape, unknown id...)."""

    status = 400
    error_type = "BadRequest"


class UnsupportedMediaType(InvocationError):
    status = 415
    error_type = "UnsupportedMediaType"


class NotAcceptable(InvocationError):
    status = 406
    error_type = "NotAcceptable"


class PayloadTooLarge(InvocationError):
    status = 413
    error_type = "PayloadTooLarge"


class ModelNotReady(InvocationError):
    status = 503
    error_type = "ModelNotReady"


class TrainingError(Exception):
    """A training failure whose message tells the user what to fix (it becomes the FailureReason)."""


class HyperparameterError(TrainingError):
    def __init__(self, name: str, problem: str):
        super().__init__(f"Hyperparameter '{name}' is invalid: {problem}")
        self.name = name


class DataError(TrainingError):
    """The input data is missing or malformed."""
