"""gluon_cnn.numpy_net without MXNet: convolution and pooling against plain loops, a small exported-style graph
run end to end, and an operator it does not implement refused at load, naming it. (Against MXNet itself, on
every network networks.py builds: tests/test_serve_only.py, in the images.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gluon_cnn import numpy_net

RNG = np.random.default_rng(1)


def naive_conv(x, w, b, stride, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, width = x.shape
    f, _, k, _ = w.shape
    oh, ow = (h - k) // stride + 1, (width - k) // stride + 1
    out = np.zeros((n, f, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def test_convolution_and_max_pooling_equal_plain_loops():
    x, w, b = RNG.random((2, 3, 9, 9), np.float32), RNG.random((4, 3, 3, 3), np.float32), RNG.random(4, np.float32)
    attrs = {"kernel": "(3, 3)", "stride": "(2, 2)", "pad": "(1, 1)", "num_filter": "4", "no_bias": "False"}
    assert np.allclose(numpy_net.convolution(attrs, x, w, b), naive_conv(x, w, b, 2, 1), atol=1e-5)
    pooled = numpy_net.pooling({"pool_type": "max", "kernel": "(2, 2)", "stride": "(2, 2)"}, x)
    assert np.array_equal(pooled, x[:, :, :8, :8].reshape(2, 3, 4, 2, 4, 2).max(axis=(3, 5)))


def graph(ops):
    """A symbol JSON: data -> each (op, attrs, weight names) in turn."""
    nodes, last = [{"op": "null", "name": "data", "inputs": []}], 0
    for op, attrs, weights in ops:
        inputs = [[last, 0, 0]]
        for name in weights:
            nodes.append({"op": "null", "name": name, "inputs": []})
            inputs.append([len(nodes) - 1, 0, 0])
        nodes.append({"op": op, "name": f"{op.lower()}{len(nodes)}", "attrs": attrs, "inputs": inputs})
        last = len(nodes) - 1
    return {"nodes": nodes, "heads": [[last, 0, 0]]}


def test_a_small_network_runs_end_to_end():
    params = {"arg:c_weight": RNG.random((2, 1, 5, 5), np.float32), "arg:c_bias": RNG.random(2, np.float32),
              "arg:bn_gamma": RNG.random(2, np.float32), "arg:bn_beta": RNG.random(2, np.float32),
              "aux:bn_moving_mean": RNG.random(2, np.float32), "aux:bn_moving_var": RNG.random(2, np.float32) + 0.5,
              "arg:d_weight": RNG.random((3, 288), np.float32), "arg:d_bias": RNG.random(3, np.float32)}  # fmt: skip
    net = numpy_net.NumpyNet(graph([
        ("Convolution", {"kernel": "(5, 5)", "num_filter": "2"}, ["c_weight", "c_bias"]),
        ("BatchNorm", {"eps": "1e-05", "fix_gamma": "False"}, ["bn_gamma", "bn_beta", "bn_moving_mean",
                                                                "bn_moving_var"]),
        ("Activation", {"act_type": "relu"}, []),
        ("Pooling", {"pool_type": "max", "kernel": "(2, 2)", "stride": "(2, 2)"}, []),
        ("Dropout", {"p": "0.5"}, []),
        ("Flatten", {}, []),
        ("FullyConnected", {"num_hidden": "3"}, ["d_weight", "d_bias"]),
    ]), params)  # fmt: skip
    x = RNG.random((4, 1, 28, 28), np.float32)
    h = naive_conv(x, params["arg:c_weight"], params["arg:c_bias"], 1, 0)
    mean, var = params["aux:bn_moving_mean"][:, None, None], params["aux:bn_moving_var"][:, None, None]
    h = (h - mean) / np.sqrt(var + 1e-5) * params["arg:bn_gamma"][:, None, None] + params["arg:bn_beta"][:, None, None]
    h = np.maximum(h, 0).reshape(4, 2, 12, 2, 12, 2).max(axis=(3, 5)).reshape(4, -1)
    expected = h @ params["arg:d_weight"].T + params["arg:d_bias"]
    assert np.allclose(net(x), expected, atol=1e-4)
    assert [n["op"] for n in net.nodes].count("BatchNorm") == 0  # folded into the convolution, still right
    probabilities = numpy_net.NumpyClassifier(net, ["a", "b", "c"]).probabilities(x)
    assert probabilities.shape == (4, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-6)


def test_an_operator_it_does_not_implement_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv("BYOC_SERVE_ONLY", "byoc-gluon-cnn")
    with pytest.raises(ValueError, match=r"uses RNN, which .* byoc-gluon-cnn:<version>-cpu"):
        numpy_net.NumpyNet(graph([("RNN", {}, [])]), {}, "model-symbol.json")
    with pytest.raises(ValueError, match="no weights for 'w'"):
        numpy_net.NumpyNet(json.loads(json.dumps(graph([("FullyConnected", {}, ["w"])]))), {})


def test_requests_batched_together_get_the_answers_they_get_alone():
    """serving.predict_batch_fn (the runtime's cross-request batching) against predict_fn request by request."""
    from gluon_cnn import inputs, serving

    params = {"arg:c_weight": RNG.random((2, 1, 5, 5), np.float32), "arg:c_bias": RNG.random(2, np.float32),
              "arg:d_weight": RNG.random((3, 1152), np.float32) - 0.5,
              "arg:d_bias": RNG.random(3, np.float32)}  # fmt: skip
    net = numpy_net.NumpyNet(graph([
        ("Convolution", {"kernel": "(5, 5)", "num_filter": "2"}, ["c_weight", "c_bias"]),
        ("Flatten", {}, []),
        ("FullyConnected", {"num_hidden": "3"}, ["d_weight", "d_bias"]),
    ]), params)  # fmt: skip
    model = numpy_net.NumpyClassifier(net, ["a", "b", "c"])
    requests = [inputs.Batch(RNG.random((n, 1, 28, 28), np.float32), verbose=n == 2) for n in (1, 3, 2, 1)]
    batched = serving.predict_batch_fn(requests, model)
    assert len(batched) == len(requests)
    for request, together in zip(requests, batched, strict=True):
        alone = serving.predict_fn(request, model)
        assert together.verbose == request.verbose and together.class_names == alone.class_names
        assert together.probabilities.shape == alone.probabilities.shape
        assert np.allclose(together.probabilities, alone.probabilities, atol=1e-6)
    assert serving.predict_batch_fn(requests[:1], model)[0].probabilities.shape == (1, 3)
