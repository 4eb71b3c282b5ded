"""TensorFlow Serving's REST semantics, without TensorFlow (unit-testable; numpy in, numpy out).

What SageMaker's TensorFlow Serving container does with a request (its nginx/python front end, then TF Serving's
REST API), done here on the signatures of the SavedModel:
- the target from the X-Amzn-SageMaker-Custom-Attributes header: tfs-model-name, tfs-model-version, tfs-method
  (predict | classify | regress; default predict);
- predict: {"signature_name"?, "instances": [...]} (row format: one value per instance for a one-input signature,
  else one object per instance keyed by every input name) answered {"predictions": [...]} (one value per instance
  for a one-output signature, else one object per instance keyed by output name); {"inputs": ...} (columnar: the
  tensor itself for one input, else an object of tensors) answered {"outputs": ...} (the tensor, or an object of
  tensors). A JSON body without those keys is the container's "generic" request: a list of lists or objects is
  the instances, any other value one instance. JSON Lines and CSV bodies: one instance per line/row.
- classify / regress: {"signature_name"?, "context"?: {...}, "examples": [{feature: value(s)}, ...]}, tf.Example
  features as TF Serving builds them (integers and booleans -> int64_list, other numbers -> float_list, strings
  and {"b64": ...} -> bytes_list); answered {"results": [[[label, score], ...], ...]} / {"results": [v, ...]}.
  The signature's method must be classify / regress, as in TF Serving: a Keras model's signatures are predict
  signatures, so classify and regress are a 400 for it, saying so.
- errors: {"error": "..."} with TF Serving's status (400 for a bad request or signature, 404 for a model or
  version that is not there); our runtime adds "error_type".
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from byoc_runtime.errors import BadRequest, InvocationError

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
PREDICT, CLASSIFY, REGRESS = "predict", "classify", "regress"
METHODS = (PREDICT, CLASSIFY, REGRESS)
METHOD_NAMES = {  # SignatureDef.method_name of each verb
    PREDICT: "tensorflow/serving/predict",
    CLASSIFY: "tensorflow/serving/classify",
    REGRESS: "tensorflow/serving/regress",
}
DEFAULT_SIGNATURE = "serving_default"
JSON_LINES = ("application/jsonlines", "application/jsonl", "application/x-jsonlines")
_ATTRIBUTE = re.compile(r"(tfs-[a-z\-]+)=([^,]+)")  # the container's own pattern


class NotFound(InvocationError):
    """A model or version the request names is not served here (TF Serving: NOT_FOUND, 404)."""

    status = 404
    error_type = "NotFound"


@dataclass(frozen=True)
class Target:
    """Which model, version and verb a request is for (from X-Amzn-SageMaker-Custom-Attributes)."""

    model: str | None = None
    version: int | None = None
    method: str = PREDICT


def parse_custom_attributes(header: str | None) -> Target:
    """'tfs-model-name=a,tfs-model-version=2,tfs-method=classify' -> Target; other attributes are ignored."""
    attributes = {key: value.strip() for key, value in _ATTRIBUTE.findall(header or "")}
    method = attributes.get("tfs-method", PREDICT).lower()
    if method not in METHODS:
        raise BadRequest(f"tfs-method={attributes['tfs-method']!r} is not one of {', '.join(METHODS)}")
    version = attributes.get("tfs-model-version")
    if version is not None and not (version.isdigit() and version.isascii()):
        raise BadRequest(f"tfs-model-version={version!r} is not a version number")
    return Target(attributes.get("tfs-model-name"), int(version) if version is not None else None, method)


@dataclass(frozen=True)
class TensorSig:
    """One input or output of a signature: its dtype and (possibly partial) shape."""

    dtype: np.dtype  # numpy's; object for strings
    kind: str  # "float", "int", "uint", "bool", "string", "other"
    shape: tuple[int | None, ...] | None  # None: unknown rank

    def describe(self) -> str:
        shape = "?" if self.shape is None else "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"
        return f"{'string' if self.kind == 'string' else self.dtype.name} {shape}"

    def fits(self, shape: tuple[int, ...]) -> bool:
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(
            w is None or w == d for w, d in zip(self.shape, shape, strict=True)
        )


@dataclass(frozen=True)
class Signature:
    name: str
    method: str  # the SignatureDef's method_name
    inputs: dict[str, TensorSig]
    outputs: dict[str, TensorSig]


@dataclass(frozen=True)
class PredictRequest:
    signature_name: str
    tensors: dict[str, np.ndarray]
    row_format: bool  # instances -> predictions; inputs -> outputs


@dataclass(frozen=True)
class ExamplesRequest:
    signature_name: str
    examples: list[dict[str, list]]  # each example's features (the context merged in), values as JSON gave them


def signature_name_of(data: Any) -> str:
    name = data.get("signature_name", DEFAULT_SIGNATURE) if isinstance(data, dict) else DEFAULT_SIGNATURE
    if not isinstance(name, str):
        raise BadRequest("'signature_name' must be a string")
    return name


def as_tfs_request(data: Any, kind: str = "application/json") -> Any:
    """A decoded body as the TF Serving request SageMaker's container makes of it."""
    if kind in JSON_LINES and isinstance(data, list):
        return {"instances": data}
    if isinstance(data, np.ndarray):  # CSV rows or an NPY array: one instance per row (a 1-column row: a scalar)
        if kind in ("text/csv", "application/csv") and data.ndim == 2 and data.shape[1] == 1:
            data = data[:, 0]
        return {"instances": data}
    if isinstance(data, dict):
        if any(key in data for key in ("instances", "inputs", "examples")):
            return data
        return {"instances": [data]}
    if isinstance(data, list) and data and isinstance(data[0], list | dict):
        return {"instances": data}
    return {"instances": [data]}


def predict_request(data: dict, signature: Signature) -> PredictRequest:
    """{"instances": ...} or {"inputs": ...} -> one array per signature input, checked against the signature."""
    has_instances, has_inputs = "instances" in data, "inputs" in data
    if has_instances and has_inputs:
        raise BadRequest("send either 'instances' or 'inputs', not both")
    if not (has_instances or has_inputs):
        raise BadRequest("Missing 'inputs' or 'instances' key")
    if not signature.inputs:
        raise BadRequest(f"Failed to get input map for signature: {signature.name}")
    if has_instances:
        tensors = _from_instances(data["instances"], signature)
    else:
        tensors = _from_inputs(data["inputs"], signature)
    for name, array in tensors.items():
        sig = signature.inputs[name]
        if not sig.fits(array.shape):
            raise BadRequest(
                f"input '{name}' has shape {list(array.shape)} but signature '{signature.name}' takes "
                f"{sig.describe()}"
                + (" (the first dimension is the batch: one entry per instance)" if has_instances else "")
            )
    return PredictRequest(signature.name, tensors, has_instances)


def _from_instances(instances: Any, signature: Signature) -> dict[str, np.ndarray]:
    if isinstance(instances, np.ndarray):
        if instances.ndim == 0 or len(instances) == 0:
            raise BadRequest("No values in 'instances' array")
        if len(signature.inputs) > 1:
            raise BadRequest(_plain_list_for_many(signature))
        name, sig = next(iter(signature.inputs.items()))
        return {name: to_array(instances, sig, f"'instances' for input '{name}'")}
    if not isinstance(instances, list):
        raise BadRequest("Expecting 'instances' to be a list/array")
    if not instances:
        raise BadRequest("No values in 'instances' array")
    names = sorted(signature.inputs)
    objects = _is_object(instances[0])
    if not objects:
        if len(names) > 1:
            raise BadRequest(_plain_list_for_many(signature))
        for position, item in enumerate(instances):
            if _is_object(item):
                raise BadRequest(f"Expecting value/list but got object at item {position} of 'instances'")
        return {names[0]: to_array(instances, signature.inputs[names[0]], f"'instances' for input '{names[0]}'")}
    columns: dict[str, list] = {name: [] for name in names}
    wanted = set(names)
    for position, item in enumerate(instances):
        if not _is_object(item):
            raise BadRequest(f"Expecting object but got list at item {position} of 'instances'")
        if item.keys() != wanted:
            missing, extra = sorted(wanted - item.keys()), sorted(item.keys() - wanted)
            raise BadRequest(
                f"Failed to process element: {position} of 'instances' list. JSON object keys must be equal to: "
                + ",".join(names)
                + (f" (missing: {', '.join(missing)})" if missing else "")
                + (f" (not inputs of signature '{signature.name}': {', '.join(extra)})" if extra else "")
            )
        for name in names:
            columns[name].append(item[name])
    return {name: to_array(values, signature.inputs[name], f"input '{name}'") for name, values in columns.items()}


def _from_inputs(inputs: Any, signature: Signature) -> dict[str, np.ndarray]:
    if not _is_object(inputs):
        if len(signature.inputs) > 1:
            raise BadRequest(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required: "
                + ", ".join(sorted(signature.inputs))
            )
        name, sig = next(iter(signature.inputs.items()))
        return {name: to_array(inputs, sig, f"'inputs' for input '{name}'")}
    tensors = {}
    for name, sig in signature.inputs.items():
        if name not in inputs:
            raise BadRequest(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = to_array(inputs[name], sig, f"input '{name}'")
    return tensors


def _plain_list_for_many(signature: Signature) -> str:
    return (
        "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
        f"signature '{signature.name}': " + ", ".join(sorted(signature.inputs))
    )


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def to_array(value: Any, sig: TensorSig, what: str) -> np.ndarray:
    """JSON values (or an already decoded array) -> an array of the signature's dtype; BadRequest naming `what`."""
    if sig.kind == "string":
        return _strings(value, what)
    if sig.kind == "other":
        raise BadRequest(f"{what}: the signature's dtype {sig.dtype} cannot be sent as JSON")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise BadRequest(f"{what}: the values do not form a tensor (the lists are of unequal lengths)") from None
    if array.dtype.kind not in "biuf":
        raise BadRequest(f"{what}: expected {sig.kind} values ({sig.dtype}), got a mix or something else")
    if sig.kind == "bool":
        if array.dtype.kind != "b":
            raise BadRequest(f"{what}: expected true/false values")
        return array
    if array.dtype.kind == "b":
        raise BadRequest(f"{what}: expected numbers of type {sig.dtype}, got true/false")
    if sig.kind in ("int", "uint"):
        if array.dtype.kind == "f":
            if not np.isfinite(array).all() or (array != np.round(array)).any():
                raise BadRequest(f"{what}: expected integers ({sig.dtype}), got fractions")
        info = np.iinfo(sig.dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise BadRequest(f"{what}: a value is outside the range of {sig.dtype} [{info.min}, {info.max}]")
        return array.astype(sig.dtype)
    if array.size and sig.dtype.itemsize < 8 and np.abs(array.astype(np.float64)).max() > np.finfo(sig.dtype).max:
        raise BadRequest(f"{what}: a value is outside the range of {sig.dtype}")
    return array.astype(sig.dtype)


def _strings(value: Any, what: str) -> np.ndarray:
    def convert(item: Any) -> Any:
        if isinstance(item, list):
            return [convert(v) for v in item]
        if isinstance(item, str):
            return item.encode("utf-8")
        if _is_b64(item):
            try:
                return base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"{what}: {item['b64'][:40]!r} is not base64") from None
        raise BadRequest(f'{what}: expected strings (or {{"b64": ...}} objects), got {type(item).__name__}')

    if isinstance(value, np.ndarray):
        raise BadRequest(f"{what}: expected strings, got numbers")
    try:
        array = np.array(convert(value), dtype=object)
    except ValueError:
        array = None
    if array is None or not all(isinstance(v, bytes) for v in array.ravel().tolist()):
        raise BadRequest(f"{what}: the values do not form a tensor (the lists are of unequal lengths)")
    return array


def examples_request(data: Any, method: str) -> ExamplesRequest:
    if not isinstance(data, dict) or "examples" not in data:
        raise BadRequest(f"When method is {method}, key 'examples' is expected and was not found")
    examples, context = data["examples"], data.get("context", {})
    if not isinstance(examples, list):
        raise BadRequest("Expecting 'examples' value to be an list/array")
    if not examples:
        raise BadRequest("'examples' value is an empty array")
    if not isinstance(context, dict):
        raise BadRequest("'context' must be an object of features")
    base = _features(context, "context")
    out = []
    for position, example in enumerate(examples):
        if not isinstance(example, dict):
            raise BadRequest(f"Example must be JSON object but got JSON {type(example).__name__} (example {position})")
        out.append({**base, **_features(example, f"example {position}")})
    return ExamplesRequest(signature_name_of(data), out)


def _features(obj: dict, where: str) -> dict[str, list]:
    features = {}
    for name, content in obj.items():
        values = content if isinstance(content, list) else [content]
        kinds = set()
        for value in values:
            if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
                raise BadRequest(f"Feature: {name} ({where}) has element with unexpected JSON type")
            kinds.add(feature_kind(value))
        if len(kinds) > 1:
            raise BadRequest(
                f"Unexpected element type in feature: {name} ({where}): mixes {' and '.join(sorted(kinds))}"
            )
        features[name] = values
    return features


def feature_kind(value: Any) -> str:
    """The tf.train.Feature list a JSON value goes to, as TF Serving decides it."""
    if isinstance(value, bool | int):
        return "int64"
    if isinstance(value, float):
        return "float"
    return "bytes"  # str or {"b64": ...}


def feature_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{value['b64'][:40]!r} is not base64") from None


# ------------------------------------------------------------------------------------------ answers
def predict_answer(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """TF Serving's JSON of a predict result: {"predictions": rows} or {"outputs": tensors}."""
    if not outputs:
        raise BadRequest("the signature has no outputs")
    names = sorted(outputs)
    columns = {name: jsonable(outputs[name], bytes_as_b64=name.endswith("_bytes")) for name in names}
    if not row_format:
        return {"outputs": columns[names[0]] if len(names) == 1 else columns}
    batch = None
    for name in names:
        array = outputs[name]
        if array.ndim == 0:
            raise BadRequest(f"Tensor name: {name} has no shape information (send 'inputs' for this signature)")
        if batch is not None and array.shape[0] != batch:
            raise BadRequest(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} expecting: {batch} "
                "(send 'inputs' for this signature)"
            )
        batch = array.shape[0]
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {"predictions": [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]}


def classify_answer(classes: np.ndarray | None, scores: np.ndarray | None) -> dict[str, Any]:
    labels = None if classes is None else [[_text(v) for v in row] for row in classes.tolist()]
    values = None if scores is None else jsonable(scores)
    rows = len(labels if labels is not None else values)
    width = len((labels if labels is not None else values)[0]) if rows else 0
    return {
        "results": [
            [[labels[i][c] if labels is not None else "", values[i][c] if values is not None else 0.0]
             for c in range(width)]
            for i in range(rows)
        ]
    }  # fmt: skip


def regress_answer(values: np.ndarray) -> dict[str, Any]:
    return {"results": jsonable(values.reshape(-1))}


def jsonable(array: np.ndarray, bytes_as_b64: bool = False) -> Any:
    """An array as JSON values the way TF Serving writes them: float32 in its shortest round-trip form (0.78,
    not 0.7799999713897705), strings as text ({"b64": ...} when not UTF-8 or the tensor's name ends in _bytes)."""
    array = np.asarray(array)
    if array.dtype.kind == "f" and array.dtype.itemsize < 8:
        return array.astype(np.float32).astype(str).astype(np.float64).tolist()
    if array.dtype.kind in "OSU":
        return _map_nested(array.tolist(), lambda v: _text(v, bytes_as_b64))
    return array.tolist()


def _text(value: Any, as_b64: bool = False) -> Any:
    if isinstance(value, bytes):
        if not as_b64:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def _map_nested(value: Any, fn) -> Any:
    if isinstance(value, list):
        return [_map_nested(v, fn) for v in value]
    return fn(value)
