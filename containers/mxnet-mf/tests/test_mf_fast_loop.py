"""The large-data MF loop (fitting._FastMF, mf_kernel's step) against the autograd loop, and when train.py picks it.

Needs MXNet on the host (e.g. a virtualenv with mxnet 1.9.1); skipped without it. The choice of loop
(train.large_data_settings) needs no MXNet.
"""

from __future__ import annotations

import numpy as np
import pytest

from mxnet_mf import synthetic, train


def _hp(**given) -> dict:
    from byoc_runtime.hyperparameters import validate

    return validate({name: str(value) for name, value in given.items()}, train.SPEC)


def test_large_data_takes_the_fast_loop_with_its_batch_unless_the_job_set_them():
    assert train.large_data_settings(_hp(), {}, 100_000, 1, 0) == {}  # ML-100K keeps the autograd loop
    large = train.large_data_settings(_hp(), {}, 1_000_000, 1, 0)
    assert large == {"fast_mf": True, "batch_size": train.LARGE_BATCH, "learning_rate": train.LARGE_LEARNING_RATE}
    given = {"mini_batch_size": 4096, "learning_rate": 0.01}
    assert train.large_data_settings(_hp(**given), given, 1_000_000, 1, 0) == {"fast_mf": True}
    for hp, hosts, gpus in ((_hp(model="deep"), 1, 0), (_hp(optimizer="sgd"), 1, 0), (_hp(), 2, 0), (_hp(), 1, 1)):
        assert train.large_data_settings(hp, {}, 1_000_000, hosts, gpus) == {}
    assert train.cpu_environment(_hp(), 1_000_000, 1, 0).get("OMP_WAIT_POLICY") == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in train.cpu_environment(_hp(), 100_000, 1, 0)


def _fit(fast: bool, batch: int, epochs: int = 1, seed: int = 0):
    from mxnet_mf import fitting

    data = synthetic.generate(num_users=60, num_items=80, num_ratings=2000, seed=seed)
    users, items, ratings = data.users - 1, data.items - 1, data.ratings
    config = fitting.FitConfig(
        model="mf",
        num_factors=8,
        hidden_units=[],
        dropout=0.0,
        epochs=epochs,
        batch_size=batch,
        learning_rate=0.01,
        wd=0.0,
        optimizer="adam",
        seed=seed,
        kvstore="local",
        l2=0.1,
        fast_mf=fast,
    )
    result = fitting.fit(config, users, items, ratings, 60, 80, float(ratings.mean()))
    from mxnet_mf.networks import arrays

    return result, arrays(result.net)


def test_one_full_batch_step_equals_the_autograd_loop():
    """One batch of all ratings: both loops take one lazy-Adam step on the same mean gradient of the same loss
    (squared error + per-rating L2 on the rows and biases), so the weights agree to float rounding."""
    pytest.importorskip("mxnet")
    fast, fast_arrays = _fit(True, batch=4096)
    slow, slow_arrays = _fit(False, batch=4096)
    assert fast.history[0]["train_rmse"] == pytest.approx(slow.history[0]["train_rmse"], rel=1e-5)
    for name, value in slow_arrays.items():
        np.testing.assert_allclose(fast_arrays[name], value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_the_fast_loop_learns_and_its_numpy_fallback_trains_alike(monkeypatch):
    """Several batches and epochs: the training error falls as in the autograd loop; without numba (the
    numpy step) fit() trains the same weights to float rounding."""
    pytest.importorskip("mxnet")
    from mxnet_mf import mf_kernel

    compiled, compiled_arrays = _fit(True, batch=256, epochs=5)
    slow, _ = _fit(False, batch=256, epochs=5)
    errors = [record["train_rmse"] for record in compiled.history]
    assert errors[-1] < errors[0] - 0.05
    assert errors[-1] == pytest.approx(slow.history[-1]["train_rmse"], abs=0.03)
    monkeypatch.setattr(mf_kernel, "steps", mf_kernel.NumpySteps)
    fallback, fallback_arrays = _fit(True, batch=256, epochs=5)
    for name, value in compiled_arrays.items():
        np.testing.assert_allclose(fallback_arrays[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
