"""The module MMS loads: exactly one class with initialize() and handle(), as the DLCs' handler_service.py."""

from __future__ import annotations

from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.transformer import Transformer

from dlc_reference.inference_handler import FamilyInferenceHandler


class HandlerService(DefaultHandlerService):
    def __init__(self):
        super().__init__(transformer=Transformer(default_inference_handler=FamilyInferenceHandler()))
