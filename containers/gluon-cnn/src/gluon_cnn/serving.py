"""Serving handlers: model_fn / input_fn / predict_fn / output_fn (the runtime owns the server).

Responses: {"predictions": [7, 2, ...]} by default; verbose (JSON body field "verbose": true, or
`Accept: application/json; verbose=1`, or the SageMaker CustomAttributes header "verbose=1") gives each
prediction's class, label, probability and all class probabilities, plus the class names.
NPY: the classes, or the (N, classes) probabilities when verbose. The model can be ours (model-symbol.json,
model-0000.params, gluon-cnn.json) or the legacy interface's (model.json + model.params).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from byoc_runtime import codecs, request_context
from byoc_runtime.serve_only import framework_missing

from . import inputs, numpy_net
from .mxnet_lock import MXNET

ACCEPTS = (codecs.JSON, codecs.JSONLINES, codecs.NPY, codecs.CSV)
CHUNK = 1024  # images per forward pass: large batches stay vectorised with bounded memory
MAX_KEPT_BATCH = 64  # input arrays kept for batches of 1..64 images: 64 arrays, 6.5 MB in all at most
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


class Classifier:
    def __init__(self, net, class_names: list[str], ctx):
        self.net, self.class_names, self.ctx = net, class_names, ctx
        self._inputs: dict[tuple[int, ...], object] = {}  # an MXNet input array per batch shape, see below

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        out = []
        with MXNET:
            for start in range(0, len(batch), CHUNK):
                chunk = np.ascontiguousarray(batch[start : start + CHUNK], dtype=np.float32)
                x = self._input_array(chunk.shape)
                x._sync_copyfrom(chunk)  # one C call (lending it through DLPack, mx.nd.from_numpy, cost 3x more)
                out.append(self.net(x).asnumpy())
        # Softmax over the classes in numpy, as the serve-only network does: ten numbers a row, not worth an
        # MXNet call (and its lock)
        return numpy_net.softmax_rows(out[0] if len(out) == 1 else np.concatenate(out))

    def _input_array(self, shape: tuple[int, ...]):
        """The MXNet array a chunk of this shape is copied into: kept for the batch sizes that recur (a request
        or a few batched together), refilled under MXNET, so one request's input is never another's. One image,
        in the image: 197 us a call with mx.nd.from_numpy, 186 with a new array each time, 179 with a kept one."""
        import mxnet as mx

        x = self._inputs.get(shape)
        if x is None:
            x = mx.nd.empty(shape, ctx=self.ctx)
            if shape[0] <= MAX_KEPT_BATCH:
                self._inputs[shape] = x
        return x


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # (N, classes)
    class_names: list[str]
    verbose: bool

    @property
    def classes(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def model_fn(model_dir: str) -> Classifier:
    if framework_missing("mxnet"):  # the serve-only image: the same graph and weights, run in numpy
        return numpy_net.load_classifier(model_dir)
    # Every MXNet call of serving runs under one lock (mxnet_lock), so the threaded engine's worker threads
    # add only hand-offs: the naive engine runs each op in the request's thread (one image 680 -> 420 us).
    # Read at `import mxnet`; a user's own setting wins.
    os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
    import mxnet as mx

    ctx = mx.gpu(0) if mx.context.num_gpus() else mx.cpu()
    symbol, params = numpy_net.model_files(model_dir)
    with MXNET, warnings.catch_warnings():  # "Cannot decide type for data": float32, given at the first call
        warnings.simplefilter("ignore", UserWarning)
        net = mx.gluon.SymbolBlock.imports(str(symbol), ["data"], str(params), ctx=ctx)
        net.hybridize(static_alloc=True)
        classes = net(mx.nd.zeros((1, 1, 28, 28), ctx=ctx)).shape[1]
    return Classifier(net, numpy_net.class_names(model_dir, classes), ctx)


def input_fn(body: bytes, content_type: str) -> inputs.Batch:
    batch = inputs.parse(body, content_type)
    return batch if batch.verbose or not _verbose_from_headers() else inputs.Batch(batch.images, True)


def predict_fn(batch: inputs.Batch, model: Classifier) -> Prediction:
    return Prediction(model.probabilities(batch.images), model.class_names, batch.verbose)


def predict_batch_fn(batches: list[inputs.Batch], model: Classifier) -> list[Prediction]:
    """Several requests' images in one forward pass (the runtime's cross-request batching): one call costs
    about as much as one image, so N requests arriving together cost little more than one."""
    if len(batches) == 1:
        return [predict_fn(batches[0], model)]
    probabilities = model.probabilities(np.concatenate([b.images for b in batches]))
    ends = np.cumsum([len(b.images) for b in batches])[:-1]
    return [
        Prediction(part, model.class_names, b.verbose)
        for part, b in zip(np.split(probabilities, ends), batches, strict=True)
    ]


def output_fn(prediction: Prediction, accept: str) -> bytes:
    kind = codecs.media_type(accept)
    if kind == codecs.NPY:
        return codecs.encode(prediction.probabilities if prediction.verbose else prediction.classes, kind)
    if not prediction.verbose:
        return codecs.encode({"predictions": prediction.classes.tolist()}, kind)
    rows = [
        {
            "class": int(c),
            "label": prediction.class_names[c],
            "probability": round(float(p[c]), 6),
            "probabilities": [round(float(v), 6) for v in p],
        }
        for c, p in zip(prediction.classes, prediction.probabilities, strict=True)
    ]
    if kind == codecs.JSON:
        return codecs.encode({"predictions": rows, "class_names": prediction.class_names}, kind)
    if kind == codecs.CSV:  # class, label, probability per line
        return codecs.encode([[r["class"], r["label"], r["probability"]] for r in rows], kind)
    return codecs.encode(rows, kind)


def _verbose_from_headers() -> bool:
    """The runtime hands handlers the bare media type; the verbose flag rides on the Accept parameters or on
    SageMaker's CustomAttributes, so read them from the request being served (absent outside a request)."""
    accept = request_context.header("Accept") or ""
    attributes = request_context.header(CUSTOM_ATTRIBUTES) or ""
    flags = [p.strip().lower().replace(" ", "") for p in (accept + ";" + attributes).replace(",", ";").split(";")]
    return any(f in ("verbose=1", "verbose=true") for f in flags)
