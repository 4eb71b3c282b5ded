"""The exported network in numpy, for the serve-only image (no MXNet): the graph of model-symbol.json (or the
legacy model.json) is run node by node on the weights of model-0000.params (model.params), read by
byoc_runtime.mxnet_params. Nothing depends on how networks.py built the graph: any graph made of the operators
below serves (convolutions of any channel counts, kernels, strides, padding, dilation and groups; dense
layers; batch norm; activations; pooling; flips and sums such as a test-time flip average). A graph with
another operator is refused at load, naming it. Inference semantics: dropout is the identity, batch norm uses
the running statistics. float32 throughout, as MXNet on the CPU: logits equal MXNet's to about 1e-6.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from byoc_runtime import mxnet_params
from byoc_runtime.serve_only import full_image

CHUNK = 128  # images per forward pass
UNFOLD_BYTES = 32 << 20  # a convolution's unfolded windows (N x C x OH x OW x k x k) copied at most this much at once


def _tuple(attrs: dict[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = attrs.get(name)
    if value in (None, "", "()", "None"):
        return default
    parsed = ast.literal_eval(value)
    return tuple(parsed) if isinstance(parsed, (tuple, list)) else (int(parsed),) * len(default)


def _bool(attrs: dict[str, str], name: str, default: bool) -> bool:
    return attrs.get(name, str(default)).strip().lower() in ("true", "1")


def _float(attrs: dict[str, str], name: str, default: float) -> float:
    return float(attrs.get(name, default))


def _pad(x: np.ndarray, pad: tuple[int, int], extra: tuple[int, int] = (0, 0), value: float = 0.0) -> np.ndarray:
    if not any(pad) and not any(extra):
        return x
    widths = ((0, 0), (0, 0), (pad[0], pad[0] + extra[0]), (pad[1], pad[1] + extra[1]))
    return np.pad(x, widths, constant_values=value)


def convolution(attrs: dict[str, str], x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    kernel = _tuple(attrs, "kernel", (1, 1))
    if len(kernel) != 2 or x.ndim != 4:
        raise ValueError(f"only 2-D convolutions (NCHW) are implemented, not kernel {kernel} on {x.ndim}-D data")
    stride, pad = _tuple(attrs, "stride", (1, 1)), _tuple(attrs, "pad", (0, 0))
    dilate, groups = _tuple(attrs, "dilate", (1, 1)), int(attrs.get("num_group", 1))
    x = _pad(x, pad)
    span = (dilate[0] * (kernel[0] - 1) + 1, dilate[1] * (kernel[1] - 1) + 1)
    windows = sliding_window_view(x, span, axis=(2, 3))[:, :, :: stride[0], :: stride[1], :: dilate[0], :: dilate[1]]
    filters_per_group, channels_per_group = weight.shape[0] // groups, x.shape[1] // groups
    n, _, oh, ow = windows.shape[:4]
    # im2col: the windows as (C*kh*kw, N*OH*OW) columns, weights @ columns (channel-first out, no transpose of
    # the result); the copy the reshape makes is bounded by taking images UNFOLD_BYTES at a time
    per_image = channels_per_group * oh * ow * kernel[0] * kernel[1] * x.dtype.itemsize
    step = max(1, UNFOLD_BYTES // max(per_image, 1))
    out = np.empty((weight.shape[0], n, oh, ow), np.result_type(x, weight))
    for g in range(groups):
        w = weight[g * filters_per_group : (g + 1) * filters_per_group].reshape(filters_per_group, -1)
        part = windows[:, g * channels_per_group : (g + 1) * channels_per_group]
        for i in range(0, n, step):
            cols = part[i : i + step].transpose(1, 4, 5, 0, 2, 3).reshape(w.shape[1], -1)
            out[g * filters_per_group : (g + 1) * filters_per_group, i : i + step] = (w @ cols).reshape(
                filters_per_group, -1, oh, ow
            )
    if bias is not None and not _bool(attrs, "no_bias", False):
        out += bias.reshape(-1, 1, 1, 1)
    return out.transpose(1, 0, 2, 3)


def fully_connected(attrs: dict[str, str], x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None):
    if _bool(attrs, "flatten", True):
        x = x.reshape(len(x), -1)
    out = x @ weight.T
    if bias is not None and not _bool(attrs, "no_bias", False):
        out = out + bias
    return out


def batch_norm(attrs, x, gamma, beta, mean, var):
    axis = int(attrs.get("axis", 1)) % x.ndim
    shape = [1] * x.ndim
    shape[axis] = -1
    if _bool(attrs, "fix_gamma", True):
        gamma = np.ones_like(gamma)
    scale = gamma / np.sqrt(var + np.float32(_float(attrs, "eps", 1e-3)))
    return (x - mean.reshape(shape)) * scale.reshape(shape) + beta.reshape(shape)


def _softrelu(x):
    return np.logaddexp(np.float32(0), x).astype(x.dtype)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softrelu": _softrelu,
    "softsign": lambda x: x / (1 + np.abs(x)),
}


def activation(attrs, x):
    kind = attrs.get("act_type", "relu")
    if kind not in ACTIVATIONS:
        raise ValueError(f"activation {kind!r} is not implemented")
    return ACTIVATIONS[kind](x)


def leaky_relu(attrs, x, gamma=None):
    kind, slope = attrs.get("act_type", "leaky"), np.float32(_float(attrs, "slope", 0.25))
    if kind == "leaky":
        return np.where(x > 0, x, x * slope)
    if kind == "prelu":
        shape = [1] * x.ndim
        shape[1] = -1
        return np.where(x > 0, x, x * gamma.reshape(shape))
    if kind == "elu":
        return np.where(x > 0, x, slope * np.expm1(np.minimum(x, 0)))
    raise ValueError(f"LeakyReLU act_type {kind!r} is not implemented")


def pooling(attrs, x):
    kind = attrs.get("pool_type", "max")
    if kind not in ("max", "avg", "sum"):
        raise ValueError(f"pool_type {kind!r} is not implemented")
    if _bool(attrs, "global_pool", False):
        reduce = np.max if kind == "max" else np.mean if kind == "avg" else np.sum
        return reduce(x, axis=(2, 3), keepdims=True)
    kernel = _tuple(attrs, "kernel", (1, 1))
    if len(kernel) != 2:
        raise ValueError(f"only 2-D pooling is implemented, not kernel {kernel}")
    stride, pad = _tuple(attrs, "stride", (1, 1)), _tuple(attrs, "pad", (0, 0))
    convention = attrs.get("pooling_convention", "valid")
    extra = [0, 0]
    if convention == "full":  # ceil instead of floor: pad the far edges so the last partial window counts
        for axis in (0, 1):
            size = x.shape[2 + axis] + 2 * pad[axis] - kernel[axis]
            extra[axis] = (-size) % stride[axis]
    elif convention != "valid":
        raise ValueError(f"pooling_convention {convention!r} is not implemented")
    fill = -np.inf if kind == "max" else 0.0
    padded = _pad(x, pad, tuple(extra), fill)
    if kind == "max":
        return _over_window(np.maximum, padded, kernel, stride)
    total = _over_window(np.add, padded, kernel, stride)
    if kind == "sum":
        return total
    if _bool(attrs, "count_include_pad", True) and not any(extra):
        return total / np.float32(kernel[0] * kernel[1])
    if _bool(attrs, "count_include_pad", True):  # the padding counts, the far edges added for `full` do not
        ones = _pad(np.ones((1, 1, x.shape[2] + 2 * pad[0], x.shape[3] + 2 * pad[1]), np.float32), (0, 0), extra)
    else:
        ones = _pad(np.ones((1, 1) + x.shape[2:], np.float32), pad, tuple(extra))
    return total / _over_window(np.add, ones, kernel, stride)


def _over_window(combine, x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """combine (np.maximum, np.add) over each pooling window: one strided slice per kernel offset, each an
    elementwise operation on whole feature maps (a reduce over a window view's small axes is 5x slower)."""
    oh, ow = (x.shape[2] - kernel[0]) // stride[0] + 1, (x.shape[3] - kernel[1]) // stride[1] + 1
    out = None
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            part = x[:, :, i : i + (oh - 1) * stride[0] + 1 : stride[0], j : j + (ow - 1) * stride[1] + 1 : stride[1]]
            out = part.copy() if out is None else combine(out, part, out=out)
    return out


def _scalar(op: Callable[[np.ndarray, np.float32], np.ndarray]):
    return lambda attrs, x: op(x, np.float32(_float(attrs, "scalar", 0.0))).astype(x.dtype)


def _reshape(attrs, x):
    target, out = _tuple(attrs, "shape", ()), []
    for position, size in enumerate(target):
        if size == 0:
            out.append(x.shape[position])
        elif size in (-1,) or size > 0:
            out.append(size)
        else:
            raise ValueError(f"Reshape code {size} is not implemented")
    return x.reshape(out)


def _flip(attrs, x):
    return np.flip(x, axis=_tuple(attrs, "axis", (0,))).copy()


def _softmax(attrs, x):
    axis = int(attrs.get("axis", -1))
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


OPERATORS: dict[str, Callable[..., np.ndarray]] = {
    "Convolution": convolution,
    "FullyConnected": fully_connected,
    "BatchNorm": batch_norm,
    "Activation": activation,
    "LeakyReLU": leaky_relu,
    "Pooling": pooling,
    "Flatten": lambda attrs, x: x.reshape(len(x), -1),
    "flatten": lambda attrs, x: x.reshape(len(x), -1),
    "Dropout": lambda attrs, x: x,
    "_copy": lambda attrs, x: x,
    "identity": lambda attrs, x: x,
    "BlockGrad": lambda attrs, x: x,
    "relu": lambda attrs, x: np.maximum(x, 0),
    "sigmoid": lambda attrs, x: _sigmoid(x),
    "tanh": lambda attrs, x: np.tanh(x),
    "softmax": _softmax,
    "SoftmaxActivation": lambda attrs, x: _softmax({"axis": "1"}, x),
    "SoftmaxOutput": lambda attrs, x, label=None: _softmax({"axis": "-1"}, x.reshape(len(x), -1)),
    "flip": _flip,
    "reverse": _flip,
    "Reshape": _reshape,
    "reshape": _reshape,
    "Concat": lambda attrs, *xs: np.concatenate(xs, axis=int(attrs.get("dim", 1))),
    "concat": lambda attrs, *xs: np.concatenate(xs, axis=int(attrs.get("dim", 1))),
    "elemwise_add": lambda attrs, a, b: a + b,
    "_plus": lambda attrs, a, b: a + b,
    "_Plus": lambda attrs, a, b: a + b,
    "broadcast_add": lambda attrs, a, b: a + b,
    "add_n": lambda attrs, *xs: sum(xs[1:], xs[0]),
    "ElementWiseSum": lambda attrs, *xs: sum(xs[1:], xs[0]),
    "elemwise_sub": lambda attrs, a, b: a - b,
    "broadcast_sub": lambda attrs, a, b: a - b,
    "elemwise_mul": lambda attrs, a, b: a * b,
    "broadcast_mul": lambda attrs, a, b: a * b,
    "elemwise_div": lambda attrs, a, b: a / b,
    "broadcast_div": lambda attrs, a, b: a / b,
    "_plus_scalar": _scalar(np.add),
    "_minus_scalar": _scalar(np.subtract),
    "_rminus_scalar": _scalar(lambda x, s: s - x),
    "_mul_scalar": _scalar(np.multiply),
    "_div_scalar": _scalar(np.divide),
    "_rdiv_scalar": _scalar(lambda x, s: s / x),
}


class NumpyNet:
    """An MXNet symbol graph with its weights, run in numpy. `net(x)`: (N, 1, 28, 28) float32 -> logits."""

    def __init__(self, graph: dict[str, Any], params: dict[str, np.ndarray], source: str = "the model"):
        self.nodes = graph["nodes"]
        self.heads = graph["heads"]
        weights = {name.split(":", 1)[-1]: value.astype(np.float32) for name, value in params.items()}
        self.values: dict[int, np.ndarray | None] = {}
        self.inputs: list[int] = []
        unknown = sorted({n["op"] for n in self.nodes if n["op"] != "null" and n["op"] not in OPERATORS})
        if unknown:
            raise ValueError(
                f"{source} uses {', '.join(unknown)}, which the serve-only image's numpy runtime does not implement: "
                f"serve it with {full_image()}"
            )
        for number, node in enumerate(self.nodes):
            if node["op"] != "null":
                continue
            if node["name"] in weights:
                self.values[number] = weights[node["name"]]
            elif node["name"].endswith("label"):  # a legacy SoftmaxOutput's label: unused at inference
                self.values[number] = None
            elif node["name"] == "data" or not self.inputs:
                self.inputs.append(number)
            else:
                raise ValueError(f"{source}: no weights for {node['name']!r} in the parameters file")
        if len(self.inputs) != 1:
            raise ValueError(f"{source}: expected one input ('data'), found {len(self.inputs)}")
        self.nodes = [dict(node) for node in self.nodes]  # folding rewrites nodes: not the caller's graph
        self._fold_batch_norms()
        self._plan = self._compile()
        self._constants = {(k, 0): v for k, v in self.values.items()}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        values: dict[tuple[int, int], np.ndarray] = dict(self._constants)
        values[(self.inputs[0], 0)] = x.astype(np.float32, copy=False)
        for number, operator, attrs, sources in self._plan:
            values[(number, 0)] = operator(attrs, *[values[source] for source in sources])
        head, index, *_ = self.heads[0]
        return values[(head, index)]

    def _compile(self) -> list[tuple[int, Callable[..., np.ndarray], dict[str, str], list[tuple[int, int]]]]:
        """The operators the output needs, in graph order, each with its attributes and input keys: worked
        out once, not on every call."""
        needed, plan = self._needed(), []
        for number, node in enumerate(self.nodes):
            if node["op"] == "null" or number not in needed:
                continue
            attrs = node.get("attrs") or node.get("attr") or node.get("param") or {}
            plan.append((number, OPERATORS[node["op"]], attrs, [(s, i) for s, i, *_ in node["inputs"]]))
        return plan

    def _needed(self) -> set[int]:
        needed, stack = set(), [head[0] for head in self.heads[:1]]
        while stack:
            number = stack.pop()
            if number not in needed:
                needed.add(number)
                stack.extend(source for source, *_ in self.nodes[number]["inputs"])
        return needed

    def _fold_batch_norms(self) -> None:
        """Inference-time BatchNorm is a per-channel scale and shift: fold it into the Convolution or
        FullyConnected that feeds only it (weights scaled, a bias added), one pass over the activations
        fewer per layer. The BatchNorm becomes an identity."""
        consumers: dict[int, int] = {}
        for node in self.nodes:
            for source, *_ in node["inputs"]:
                consumers[source] = consumers.get(source, 0) + 1
        for head, *_ in self.heads:
            consumers[head] = consumers.get(head, 0) + 1
        for number, node in enumerate(self.nodes):
            if node["op"] != "BatchNorm" or len(node["inputs"]) != 5:
                continue
            attrs = node.get("attrs") or node.get("attr") or node.get("param") or {}
            (layer, index, *_), *stats = node["inputs"]
            producer = self.nodes[layer]
            if producer["op"] not in ("Convolution", "FullyConnected") or index or consumers.get(layer) != 1:
                continue
            if int(attrs.get("axis", 1)) != 1 or any(self.values.get(s) is None for s, *_ in stats):
                continue
            layer_attrs = dict(producer.get("attrs") or producer.get("attr") or producer.get("param") or {})
            weight_key = producer["inputs"][1][0]
            weight = self.values.get(weight_key)
            has_bias = len(producer["inputs"]) > 2 and not _bool(layer_attrs, "no_bias", False)
            bias = self.values.get(producer["inputs"][2][0]) if has_bias else np.zeros(len(weight), np.float32)
            if weight is None or bias is None:
                continue
            gamma, beta, mean, var = (self.values[s] for s, *_ in stats)
            if _bool(attrs, "fix_gamma", True):
                gamma = np.ones_like(gamma)
            scale = gamma / np.sqrt(var + np.float32(_float(attrs, "eps", 1e-3)))
            folded_weight = (weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(np.float32)
            folded_bias = ((bias - mean) * scale + beta).astype(np.float32)
            self.nodes.append({"op": "null", "name": f"{producer.get('name', layer)}_folded_weight", "inputs": []})
            self.values[len(self.nodes) - 1] = folded_weight
            self.nodes.append({"op": "null", "name": f"{producer.get('name', layer)}_folded_bias", "inputs": []})
            self.values[len(self.nodes) - 1] = folded_bias
            layer_attrs["no_bias"] = "False"
            self.nodes[layer] = {**producer, "attrs": layer_attrs,
                                 "inputs": [producer["inputs"][0], [len(self.nodes) - 2, 0, 0],
                                            [len(self.nodes) - 1, 0, 0]]}  # fmt: skip
            self.nodes[number] = {**node, "op": "_copy", "attrs": {}, "inputs": [[layer, 0, 0]]}


class NumpyClassifier:
    """serving.Classifier's interface without MXNet: softmax probabilities of the numpy network's logits."""

    def __init__(self, net: NumpyNet, class_names: list[str]):
        self.net, self.class_names = net, class_names

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(batch), CHUNK):
            logits = self.net(batch[start : start + CHUNK])
            out.append(softmax_rows(logits.reshape(len(logits), -1)))
        return np.concatenate(out) if out else np.empty((0, len(self.class_names)), np.float32)


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """(N, classes) logits -> float32 probabilities (the MXNet classifier's softmax, too)."""
    return _softmax({"axis": "1"}, logits).astype(np.float32)


def load(symbol: Path, params: Path) -> NumpyNet:
    return NumpyNet(json.loads(symbol.read_text()), mxnet_params.load(params), str(symbol))


def model_files(model_dir: str) -> tuple[Path, Path]:
    """(symbol, params) of a saved model: our export, or what the course's legacy save(net, model_dir) writes."""
    from .train import MODEL_PREFIX

    directory = Path(model_dir)
    if (directory / f"{MODEL_PREFIX}-symbol.json").exists():
        return directory / f"{MODEL_PREFIX}-symbol.json", directory / f"{MODEL_PREFIX}-0000.params"
    if (directory / "model.json").exists():
        return directory / "model.json", directory / "model.params"
    found = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise FileNotFoundError(f"no model-symbol.json or model.json in {model_dir} (found {found})")


def class_names(model_dir: str, classes: int) -> list[str]:
    """The names the training job recorded, else "0", "1", ...; as many as the network has outputs."""
    from .train import META_FILE

    meta_file = Path(model_dir) / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return (meta.get("class_names") or [str(i) for i in range(classes)])[:classes]


def load_classifier(model_dir: str) -> NumpyClassifier:
    """serving.model_fn without MXNet: the same files, class names and number of classes."""
    net = load(*model_files(model_dir))
    classes = net(np.zeros((1, 1, 28, 28), np.float32)).reshape(1, -1).shape[1]
    return NumpyClassifier(net, class_names(model_dir, classes))
