"""sagemaker-inference's default handlers, each calling the family's own function (model_fn, input_fn,
predict_fn, output_fn as BYOC_SERVE names them), so both stacks run the same model code on the same files."""

from __future__ import annotations

from sagemaker_inference.default_inference_handler import DefaultInferenceHandler

from byoc_runtime import handlers as registry
from byoc_runtime.serving_settings import ServingSettings

_FAMILY = registry.resolve(ServingSettings.from_env())


class FamilyInferenceHandler(DefaultInferenceHandler):
    def default_model_fn(self, model_dir, context=None):
        return _FAMILY.model_fn(model_dir)

    def default_input_fn(self, input_data, content_type, context=None):
        # The toolkit hands JSON and CSV bodies over as str; our codecs read bytes.
        if isinstance(input_data, str):
            input_data = input_data.encode()
        return _FAMILY.input_fn(input_data, content_type)

    def default_predict_fn(self, data, model, context=None):
        return _FAMILY.predict_fn(data, model)

    def default_output_fn(self, prediction, accept, context=None):
        return _FAMILY.output_fn(prediction, accept)
