"""The numpy FM trainer: gradients against finite differences, both batch layouts, Adam, learning."""

import numpy as np
import pytest

from fm_algo import spec
from fm_algo.batch import compact
from fm_algo.data import CsrData
from fm_algo.engine import FMTrainer
from fm_algo.model import FMModel


def hyperparameters(**overrides):
    raw = {"feature_dim": 12, "num_factors": 4, "predictor_type": "regressor", **overrides}
    return spec.parse(raw)


def random_batch(rows=9, cols=12, density=0.4, seed=0, classifier=False):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(rows, cols)).astype(np.float32) * (rng.random((rows, cols)) < density)
    labels = (rng.random(rows) < 0.5).astype(np.float32) if classifier else rng.normal(size=rows).astype(np.float32)
    return CsrData.from_dense(dense, labels), dense


def loss_of(params, dense, labels, classifier):
    model = FMModel(float(params["bias"][0]), params["linear"], params["factors"], "regressor")
    raw = model.raw_scores(dense.astype(np.float64))
    if classifier:
        return float(np.sum(np.logaddexp(0, raw) - labels * raw))
    return 0.5 * float(np.sum((raw - labels) ** 2))


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("predictor_type", ["regressor", "binary_classifier"])
def test_gradients_match_finite_differences(layout, predictor_type):
    classifier = predictor_type == "binary_classifier"
    trainer = FMTrainer(hyperparameters(predictor_type=predictor_type, factors_init_sigma=0.5), layout=layout)
    batch, dense = random_batch(classifier=classifier)
    params = {g: p.astype(np.float64) for g, p in trainer.params.items()}
    _, rows, grads = trainer.gradients(batch)
    eps = 1e-5
    for group, index, compact_index in (
        ("bias", (0,), (0,)),
        ("linear", (rows[1],), (1,)),
        ("factors", (rows[2], 3), (2, 3)),
    ):
        up, down = {g: p.copy() for g, p in params.items()}, {g: p.copy() for g, p in params.items()}
        up[group][index] += eps
        down[group][index] -= eps
        numeric = (loss_of(up, dense, batch.labels, classifier) - loss_of(down, dense, batch.labels, classifier)) / (
            2 * eps
        )
        analytic = grads[group][compact_index]
        assert analytic == pytest.approx(numeric, rel=2e-3, abs=2e-4), group


def test_dense_and_sparse_layouts_agree():
    batch, _ = random_batch(rows=30, density=0.3, seed=3)
    rng = np.random.default_rng(1)
    rows_d, dense = compact(batch, "dense")
    rows_s, sparse = compact(batch, "sparse")
    assert np.array_equal(rows_d, rows_s)
    a = rng.normal(size=(rows_d.size, 5)).astype(np.float32)
    g = rng.normal(size=(len(batch), 5)).astype(np.float32)
    for squared in (False, True):
        assert np.allclose(dense.matmul(a, squared), sparse.matmul(a, squared), atol=1e-5)
        assert np.allclose(dense.t_matmul(g, squared), sparse.t_matmul(g, squared), atol=1e-5)
        assert np.allclose(dense.t_matmul(g[:, 0], squared), sparse.t_matmul(g[:, 0], squared), atol=1e-5)


def test_the_update_touches_only_the_batch_rows_lazy_adam():
    trainer = FMTrainer(hyperparameters())
    before = {g: p.copy() for g, p in trainer.params.items()}
    x = np.zeros((4, 12), np.float32)
    x[:, [2, 5]] = 1.0
    trainer.step(CsrData.from_dense(x, np.ones(4, np.float32)))
    changed = np.flatnonzero(np.any(trainer.params["factors"] != before["factors"], axis=1))
    assert changed.tolist() == [2, 5]
    assert np.flatnonzero(trainer.params["linear"] != before["linear"]).tolist() == [2, 5]
    assert trainer.params["bias"][0] != before["bias"][0]


def test_first_adam_step_moves_each_weight_by_the_learning_rate():
    # With zero moments, Adam's first (bias-corrected) step is lr * sign(grad), whatever the gradient's scale.
    trainer = FMTrainer(hyperparameters(bias_lr=0.5, bias_wd=0.0, bias_init_method="constant", bias_init_value=0.0))
    x = np.eye(12, dtype=np.float32)[:3]
    trainer.step(CsrData.from_dense(x, np.full(3, 100.0, np.float32)))
    assert trainer.params["bias"][0] == pytest.approx(0.5, rel=1e-4)


def test_clip_gradient_and_rescale_grad_are_applied():
    hp = hyperparameters(clip_gradient=0.001, rescale_grad=1.0, bias_wd=0.0, linear_wd=0.0)
    trainer = FMTrainer(hp)
    x = np.eye(12, dtype=np.float32)[:2]
    trainer.step(CsrData.from_dense(x, np.full(2, 100.0, np.float32)))
    assert np.all(np.abs(trainer.mean["linear"][:2]) <= 0.1 * 0.001 + 1e-9)


def test_learns_a_sparse_pairwise_regression():
    """Ratings that are a user bias + item bias + user.item interaction: FM must get far below the mean."""
    rng = np.random.default_rng(0)
    users, items, n = 40, 30, 4000
    u_vec, i_vec = rng.normal(size=(users, 3)), rng.normal(size=(items, 3))
    u, i = rng.integers(0, users, n), rng.integers(0, items, n)
    y = (3 + 0.5 * rng.normal(size=users)[u] + (u_vec[u] * i_vec[i]).sum(axis=1)).astype(np.float32)
    indptr = np.arange(0, 2 * n + 1, 2)
    indices = np.stack([u, users + i], axis=1).ravel()
    data = CsrData(indptr, indices, np.ones(2 * n, np.float32), y, users + items)
    hp = spec.parse(
        {
            "feature_dim": users + items,
            "num_factors": 8,
            "predictor_type": "regressor",
            "epochs": 1,
            "mini_batch_size": 100,
            "bias_lr": 0.05,
            "linear_lr": 0.05,
            "factors_lr": 0.05,
            "factors_init_sigma": 0.1,
            "linear_wd": 0.0,
            "factors_wd": 0.0,
            "bias_wd": 0.0,
        }
    )
    trainer = FMTrainer(hp)
    for epoch in range(30):
        order = np.random.default_rng(epoch).permutation(n)
        for start in range(0, n, 100):
            trainer.step(data.take(order[start : start + 100]))
    rmse = float(np.sqrt(np.mean((trainer.model().scores(data) - y) ** 2)))
    baseline = float(np.std(y))
    assert rmse < 0.3 * baseline, (rmse, baseline)


def test_state_round_trip():
    trainer = FMTrainer(hyperparameters())
    batch, _ = random_batch()
    trainer.step(batch)
    other = FMTrainer(hyperparameters())
    other.load_state({k: np.array(v) for k, v in trainer.state().items()})
    trainer.step(batch)
    other.step(batch)
    assert np.array_equal(trainer.params["factors"], other.params["factors"]) and other.steps == 2
