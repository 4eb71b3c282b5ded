"""The serve-only path (no TensorFlow): NeuMF in numpy on exported weights, the same NCF answers, 501 for what
needs TensorFlow, TF Serving's 404s, and a clear load error for a SavedModel without our weights. Runs where
TensorFlow is not installed (the numpy path is what model_fn takes then)."""

from __future__ import annotations

import numpy as np
import pytest

from byoc_runtime import atomic
from byoc_runtime.serve_only import NeedsFramework, framework_missing
from ncf_tf import artifacts, numpy_model, serving, tfs_rest

pytestmark = pytest.mark.skipif(not framework_missing("tensorflow"), reason="the full image's path when TF is here")
RNG = np.random.default_rng(0)
N_USERS, N_ITEMS, FACTORS, LAYERS = 5, 7, 4, [8, 6, 3]


def _weights() -> dict[str, np.ndarray]:
    half = LAYERS[0] // 2
    w = {"gmf_user:0": RNG.normal(size=(N_USERS, FACTORS)), "gmf_item:0": RNG.normal(size=(N_ITEMS, FACTORS)),
         "mlp_user:0": RNG.normal(size=(N_USERS, half)), "mlp_item:0": RNG.normal(size=(N_ITEMS, half))}  # fmt: skip
    for depth, (n_in, n_out) in enumerate(zip(LAYERS, LAYERS[1:], strict=False), start=1):
        w[f"mlp_dense_{depth}:0"], w[f"mlp_dense_{depth}:1"] = RNG.normal(size=(n_in, n_out)), RNG.normal(size=n_out)
    w["prediction:0"], w["prediction:1"] = RNG.normal(size=(FACTORS + LAYERS[-1], 1)), RNG.normal(size=1)
    return {k: v.astype(np.float32) for k, v in w.items()}


def _expected(w, users, items):
    """NeuMF written out plainly, in float64."""
    out = []
    for u, i in zip(users, items, strict=True):
        gmf = w["gmf_user:0"][u] * w["gmf_item:0"][i]
        x = np.r_[w["mlp_user:0"][u], w["mlp_item:0"][i]].astype(np.float64)
        for depth in range(1, len(LAYERS)):
            x = np.maximum(x @ w[f"mlp_dense_{depth}:0"] + w[f"mlp_dense_{depth}:1"], 0)
        logit = np.r_[gmf, x] @ w["prediction:0"][:, 0] + w["prediction:1"][0]
        out.append(1 / (1 + np.exp(-logit)))
    return np.array(out)


@pytest.fixture
def model_dir(tmp_path):
    root = tmp_path / "model"
    (root / artifacts.MODEL_VERSION).mkdir(parents=True)
    (root / artifacts.MODEL_VERSION / "saved_model.pb").write_bytes(b"not read without TensorFlow")
    users, items = np.array([0, 0, 1, 3]), np.array([1, 2, 0, 6])
    artifacts.write_extras(root, np.arange(1, N_USERS + 1) * 10, np.arange(1, N_ITEMS + 1) * 100, users, items, {})
    weights = _weights()
    atomic.save_npz(root / "ncf" / numpy_model.WEIGHTS, version=np.asarray(1), **weights)
    return root, weights


def test_scores_and_top_k_equal_the_plain_forward_pass(model_dir):
    root, weights = model_dir
    model = serving.model_fn(str(root))
    assert isinstance(model, serving.NumpyServed) and model.extras.n_users == N_USERS
    target = tfs_rest.parse_custom_attributes(None)
    users, items = [0, 1, 4, 2], [6, 0, 3, 3]
    instances = [{"input_1": u, "input_2": i} for u, i in zip(users, items, strict=True)]
    answer = serving._numpy_predict({"instances": instances}, model, target)
    assert answer.shape == (4, 1) and np.allclose(answer[:, 0], _expected(weights, users, items), atol=1e-6)
    raw = serving._numpy_predict({"instances": [{"user_id": 10, "item_id": 700}]}, model, target)
    assert np.allclose(raw[0, 0], _expected(weights, [0], [6])[0], atol=1e-6)
    top = serving._numpy_predict({"instances": [{"user_id": 10, "top_k": 3}]}, model, target)["predictions"][0]
    every = _expected(weights, [0] * N_ITEMS, list(range(N_ITEMS)))
    every[[1, 2]] = -np.inf  # user 0's training items are not recommended
    assert top["items"] == np.argsort(-every, kind="stable")[:3].tolist()
    assert np.allclose(top["scores"], np.sort(every)[::-1][:3], atol=1e-6)


def test_what_needs_tensorflow_is_a_501_naming_the_full_image(model_dir, monkeypatch):
    root, _ = model_dir
    monkeypatch.setenv("BYOC_SERVE_ONLY", "byoc-ncf-tf")
    model = serving.model_fn(str(root))
    body = {"instances": [{"input_1": 0, "input_2": 1}]}
    for header in ("tfs-method=classify", "tfs-method=regress"):
        with pytest.raises(NeedsFramework, match="byoc-ncf-tf:<version>-cpu"):
            serving._numpy_predict(body, model, tfs_rest.parse_custom_attributes(header))
    with pytest.raises(NeedsFramework):
        serving._numpy_predict({**body, "signature_name": "other"}, model, tfs_rest.parse_custom_attributes(None))
    with pytest.raises(tfs_rest.NotFound):
        serving._numpy_predict(body, model, tfs_rest.parse_custom_attributes("tfs-model-name=nope"))
    with pytest.raises(tfs_rest.NotFound):
        serving._numpy_predict(body, model, tfs_rest.parse_custom_attributes("tfs-model-version=2"))
    assert NeedsFramework("x").status == 501


def test_a_savedmodel_without_our_weights_fails_to_load_saying_why(model_dir):
    root, _ = model_dir
    (root / "ncf" / numpy_model.WEIGHTS).unlink()
    with pytest.raises(NeedsFramework, match="needs TensorFlow"):
        serving.model_fn(str(root))
    (root / "000000002").mkdir()  # a newer version beside ours: the exported weights are not the newest
    (root / "000000002" / "saved_model.pb").write_bytes(b"")
    atomic.save_npz(root / "ncf" / numpy_model.WEIGHTS, version=np.asarray(1), **_weights())
    with pytest.raises(NeedsFramework, match="newest version 2"):
        serving.model_fn(str(root))
