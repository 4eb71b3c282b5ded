"""Loading and running any SavedModel as TensorFlow Serving does: every version of every model in the layout
(layout.py), every signature with its method name (read from saved_model.pb: TensorFlow's Python loader does
not keep it), predict on any signature, classify/regress on signatures of those methods (tf.Example input)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from byoc_runtime.errors import BadRequest

from . import layout, tfs_rest
from .tfs_rest import CLASSIFY, METHOD_NAMES, REGRESS, Signature, TensorSig

log = logging.getLogger(__name__)
SERVE_TAG = "serve"


@dataclass
class Servable:
    """One version of one model, loaded."""

    model: str
    version: int
    path: Path
    signatures: dict[str, Signature]
    functions: dict[str, Any] = field(repr=False)
    loaded: Any = field(repr=False, default=None)  # keeps the variables the functions use alive

    def signature(self, name: str) -> Signature:
        if name not in self.signatures:
            raise BadRequest(
                f'Serving signature name: "{name}" not found in signature def (model {self.model} version '
                f"{self.version} has: {', '.join(sorted(self.signatures)) or 'none'})"
            )
        return self.signatures[name]

    def run(self, signature: Signature, tensors: dict[str, Any]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        function = self.functions[signature.name]
        feed = {
            name: tf.constant(value, dtype=tf.string if signature.inputs[name].kind == "string" else value.dtype)
            for name, value in tensors.items()
        }
        try:
            out = function(**feed)
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError, tf.errors.FailedPreconditionError) as err:
            raise BadRequest(f"{type(err).__name__}: {_first_line(err.message)}") from None
        except (TypeError, ValueError) as err:  # the function's own argument checks
            raise BadRequest(f"the inputs do not fit signature '{signature.name}': {_first_line(str(err))}") from None
        return {name: value.numpy() for name, value in out.items()}

    def classify(self, request: tfs_rest.ExamplesRequest) -> dict[str, Any]:
        signature = self._examples_signature(request, CLASSIFY)
        if not {"classes", "scores"} & signature.outputs.keys():
            raise BadRequest(
                'Expected classification signature outputs to contain at least one of "classes" or "scores"'
            )
        out = self.run(signature, {"inputs": _serialized_examples(request.examples)})
        classes, scores = out.get("classes"), out.get("scores")
        for name, tensor in (("classes", classes), ("scores", scores)):
            if tensor is not None and (tensor.ndim != 2 or tensor.shape[0] != len(request.examples)):
                raise BadRequest(
                    f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)} ({name})"
                )
        if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
            raise BadRequest("Tensors class and score should match in dim_size(1)")
        return tfs_rest.classify_answer(classes, scores)

    def regress(self, request: tfs_rest.ExamplesRequest) -> dict[str, Any]:
        signature = self._examples_signature(request, REGRESS)
        if "outputs" not in signature.outputs:
            raise BadRequest('Expected regression signature outputs to contain "outputs"')
        values = self.run(signature, {"inputs": _serialized_examples(request.examples)})["outputs"]
        if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)) or len(values) != len(
            request.examples
        ):
            raise BadRequest(f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
                             f"{list(values.shape)}")  # fmt: skip
        return tfs_rest.regress_answer(values)

    def _examples_signature(self, request: tfs_rest.ExamplesRequest, method: str) -> Signature:
        signature = self.signature(request.signature_name)
        wanted = METHOD_NAMES[method]
        if signature.method != wanted:
            kind = "classification" if method == CLASSIFY else "regression"
            hint = (
                f" (signature '{signature.name}' of model {self.model} is a predict signature, as every signature of "
                f'a Keras model is: send {{"instances": ...}} with tfs-method=predict, or export a {kind} signature)'
                if signature.method == METHOD_NAMES["predict"]
                else ""
            )
            raise BadRequest(f"Expected {kind} signature method_name to be {wanted}. Was: {signature.method}{hint}")
        if list(signature.inputs) != ["inputs"] or signature.inputs["inputs"].kind != "string":
            raise BadRequest(f"Expected one input Tensor, 'inputs', of serialized tf.Examples in signature "
                             f"'{signature.name}'")  # fmt: skip
        return signature


@dataclass
class ServedModel:
    name: str
    base: Path
    versions: dict[int, Servable]

    @property
    def newest(self) -> Servable:
        return self.versions[max(self.versions)]

    def version(self, number: int | None) -> Servable:
        if number is None:
            return self.newest
        if number not in self.versions:
            raise tfs_rest.NotFound(
                f"Servable not found for request: Specific({self.name}, {number}) (versions: "
                + ", ".join(map(str, sorted(self.versions)))
                + ")"
            )
        return self.versions[number]


def load_all(root: Path) -> list[ServedModel]:
    """Every version of every model under `root`; a ValueError naming the directory when one cannot be loaded."""
    served = []
    for found in layout.discover(root):
        versions = {number: load(found.name, number, path) for number, path in sorted(found.versions.items())}
        served.append(ServedModel(found.name, found.base, versions))
        log.info("model %s: versions %s from %s", found.name, ", ".join(map(str, sorted(versions))), found.base)
    return served


def load(model: str, version: int, path: Path) -> Servable:
    import tensorflow as tf

    definitions = read_signature_defs(path)
    try:
        loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])
    except Exception as err:  # noqa: BLE001 - any failure to load is the model's, said with its path
        raise ValueError(
            f"cannot load the SavedModel in {path}: {type(err).__name__}: {_first_line(str(err))}"
        ) from None
    functions = dict(loaded.signatures)
    signatures = {name: definitions[name] for name in functions if name in definitions}
    if not signatures:
        raise ValueError(f"the SavedModel in {path} has no signatures to serve (save it with model.save or "
                         "tf.saved_model.save(obj, dir, signatures=...))")  # fmt: skip
    for name, signature in signatures.items():
        log.info(
            "model %s version %d: signature %s (%s): %s -> %s", model, version, name, signature.method.rsplit("/")[-1],
            _describe(signature.inputs), _describe(signature.outputs),
        )  # fmt: skip
    return Servable(model, version, path, signatures, functions, loaded)


def read_signature_defs(path: Path) -> dict[str, Signature]:
    """The SignatureDefs of the 'serve' meta graph, from saved_model.pb (or .pbtxt)."""
    import tensorflow as tf
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    binary = path / "saved_model.pb"
    try:
        if binary.is_file():
            proto.ParseFromString(binary.read_bytes())
        else:
            text_format.Parse((path / "saved_model.pbtxt").read_text(), proto)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError, OSError) as err:
        raise ValueError(f"{binary} is not a readable SavedModel: {type(err).__name__}: {err}") from None
    graphs = [g for g in proto.meta_graphs if SERVE_TAG in g.meta_info_def.tags] or list(proto.meta_graphs)
    if not graphs:
        raise ValueError(f"{binary} holds no meta graph")
    signatures = {}
    for name, definition in graphs[0].signature_def.items():
        if name.startswith("__"):  # e.g. __saved_model_init_op
            continue
        signatures[name] = Signature(
            name,
            definition.method_name or METHOD_NAMES["predict"],
            {key: _tensor_sig(tf, info) for key, info in definition.inputs.items()},
            {key: _tensor_sig(tf, info) for key, info in definition.outputs.items()},
        )
    return signatures


def _tensor_sig(tf, info) -> TensorSig:
    dtype = tf.dtypes.as_dtype(info.dtype)
    shape = tf.TensorShape(info.tensor_shape)
    dims = None if shape.rank is None else tuple(shape.as_list())
    if dtype == tf.string:
        return TensorSig(np.dtype(object), "string", dims)
    if dtype.is_bool:
        kind = "bool"
    elif dtype.is_floating:
        kind = "float"
    elif dtype.is_integer:
        kind = "uint" if dtype.is_unsigned else "int"
    else:
        kind = "other"
    try:
        numpy_dtype = np.dtype(dtype.as_numpy_dtype)
    except TypeError:
        numpy_dtype, kind = np.dtype(object), "other"
    if kind == "float" and numpy_dtype.kind != "f":  # bfloat16: send float32, cast by TensorFlow? refuse instead
        kind = "other"
    return TensorSig(numpy_dtype, kind, dims)


def _serialized_examples(examples: list[dict[str, list]]) -> np.ndarray:
    import tensorflow as tf

    serialized = []
    for features in examples:
        feature = {}
        for name, values in features.items():
            kind = tfs_rest.feature_kind(values[0]) if values else "float"
            if kind == "int64":
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
            elif kind == "float":
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
            else:
                feature[name] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tfs_rest.feature_bytes(v) for v in values])
                )
        serialized.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return np.array(serialized, dtype=object)


def _describe(tensors: dict[str, TensorSig]) -> str:
    return "{" + ", ".join(f"{name}: {sig.describe()}" for name, sig in sorted(tensors.items())) + "}"


def _first_line(text: str) -> str:
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    return line[:500]
