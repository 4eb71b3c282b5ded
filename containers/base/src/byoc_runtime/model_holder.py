"""Loads the model once per worker, after fork, in the background so /ping can answer 503 meanwhile."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import ModelNotReady

log = logging.getLogger(__name__)


class ModelHolder:
    def __init__(self, load: Callable[[], Any]):
        self._load = load
        self._loaded = threading.Event()
        self._model: Any = None
        self.error: str | None = None
        self.load_seconds: float | None = None

    def start(self, background: bool = True) -> ModelHolder:
        if background:
            threading.Thread(target=self._run, name="model-loader", daemon=True).start()
        else:
            self._run()
        return self

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            self._model = self._load()
            self.load_seconds = time.perf_counter() - started
            log.info("model loaded in %.2f s", self.load_seconds)
        except Exception as err:  # noqa: BLE001 - reported through /ping and the log
            self.error = f"{type(err).__name__}: {err}"
            log.exception("loading the model failed")
        finally:
            self._loaded.set()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self.error is None

    def get(self, wait: float) -> Any:
        """The model, waiting up to `wait` seconds for the load to finish."""
        if not self._loaded.wait(wait):
            raise ModelNotReady("The model is still loading; retry shortly")
        if self.error is not None:
            raise ModelNotReady(f"The model failed to load: {self.error}")
        return self._model
