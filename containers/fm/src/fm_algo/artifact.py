"""The model files in /opt/ml/model:

- `fm_model.npz` (w0, w, V, predictor_type): what our endpoint loads, in milliseconds and without MXNet;
- `model_algo-1`, the built-in algorithm's layout: a zip of `params` (MXNet NDArrays w0_weight (1,),
  w1_weight (d, 1), v (d, k)) and `symbol.json`, so code written for the built-in's model (unzip,
  mx.module.Module.load, m._arg_params['v']) works on ours too. Written where MXNet is installed (the image).

`load` reads either, so our endpoint also serves a model trained by the built-in algorithm.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from byoc_runtime import atomic, mxnet_params, serve_only

from .model import FMModel

ARCHIVE_NAME = "model_algo-1"
NPZ_NAME = "fm_model.npz"
CONFIG_NAME = "fm_config.json"


def _symbol(model: FMModel):
    import mxnet as mx

    d, k = model.feature_dim, model.num_factors
    data = mx.sym.Variable("data", stype="csr")
    w0 = mx.sym.Variable("w0_weight", shape=(1,))
    w1 = mx.sym.Variable("w1_weight", shape=(d, 1), stype="row_sparse")
    v = mx.sym.Variable("v", shape=(d, k), stype="row_sparse")
    linear = mx.sym.broadcast_add(mx.sym.sparse.dot(data, w1), w0)
    xv = mx.sym.sparse.dot(data, v)
    squares = mx.sym.sparse.dot(mx.sym.square(data), mx.sym.square(v))
    pairs = 0.5 * mx.sym.sum(mx.sym.square(xv) - squares, axis=1, keepdims=True)
    label = mx.sym.Variable("out_label")
    if model.predictor_type == "binary_classifier":
        return mx.sym.LogisticRegressionOutput(linear + pairs, label, name="out")
    return mx.sym.LinearRegressionOutput(linear + pairs, label, name="out")


def save(model: FMModel, model_dir: Path) -> list[Path]:
    model_dir.mkdir(parents=True, exist_ok=True)
    npz = model_dir / NPZ_NAME
    with atomic.open_for_write(npz) as out:  # a temporary name, renamed when whole; ENOSPC names the file
        np.savez(out, w0=np.float32(model.w0), w=model.w, V=model.V, predictor_type=model.predictor_type)
    try:
        import mxnet  # noqa: F401 - only the built-in-compatible archive needs it
    except ImportError:
        return [npz]
    return [npz, save_builtin_archive(model, model_dir)]


def save_builtin_archive(model: FMModel, model_dir: Path) -> Path:
    import mxnet as mx

    arrays = {
        "arg:w0_weight": mx.nd.array(np.array([model.w0], np.float32)),
        "arg:w1_weight": mx.nd.array(model.w.reshape(-1, 1)),
        "arg:v": mx.nd.array(model.V),
    }
    config = {
        "predictor_type": model.predictor_type,
        "feature_dim": model.feature_dim,
        "num_factors": model.num_factors,
    }
    with atomic.scratch(model_dir) as tmp:
        params = os.path.join(tmp, "params")
        mx.nd.save(params, arrays)
        target = model_dir / ARCHIVE_NAME
        with atomic.open_for_write(target) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(params, "params")
            archive.writestr("symbol.json", _symbol(model).tojson())
            archive.writestr(CONFIG_NAME, json.dumps(config))
    return target


def load(model_dir: str | Path) -> FMModel:
    npz = Path(model_dir) / NPZ_NAME
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as saved:
            return FMModel(
                float(saved["w0"]),
                saved["w"].astype(np.float32),
                saved["V"].astype(np.float32),
                str(saved["predictor_type"]),
            )
    return load_builtin_archive(model_dir)


def load_builtin_archive(model_dir: str | Path) -> FMModel:
    path = Path(model_dir) / ARCHIVE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"neither {NPZ_NAME} nor {ARCHIVE_NAME} in {model_dir}: is this an FM model?")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        params = archive.read("params")
        if CONFIG_NAME in names:
            predictor_type = json.loads(archive.read(CONFIG_NAME))["predictor_type"]
        else:  # the built-in's own archive: its output layer tells the predictor type
            symbol = archive.read("symbol.json").decode()
            predictor_type = "binary_classifier" if "LogisticRegressionOutput" in symbol else "regressor"
    arrays = {name.split(":", 1)[-1]: value for name, value in _read_params(params, f"{path}:params").items()}
    return FMModel(
        float(arrays["w0_weight"][0]),
        arrays["w1_weight"][:, 0].astype(np.float32),
        arrays["v"].astype(np.float32),
        predictor_type,
    )


def _read_params(params: bytes, source: str) -> dict[str, np.ndarray]:
    """The archive's NDArray file: by MXNet where it is installed, else by our reader (serve-only image)."""
    if serve_only.framework_missing("mxnet"):
        return mxnet_params.loads(params, source)
    import mxnet as mx

    with tempfile.NamedTemporaryFile(suffix=".params") as tmp:
        tmp.write(params)
        tmp.flush()
        return {name: value.asnumpy() for name, value in mx.nd.load(tmp.name).items()}
