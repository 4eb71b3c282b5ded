"""The large-data MF loop's arithmetic (mxnet_mf.mf_kernel): numba's compiled step against numpy's, and both
learning a planted structure. Needs no MXNet; the compiled half is skipped where numba is not installed."""

from __future__ import annotations

import numpy as np
import pytest

from mxnet_mf import mf_kernel, synthetic


def _data(num_users=60, num_items=80, num_ratings=3000, seed=0):
    data = synthetic.generate(num_users=num_users, num_items=num_items, num_ratings=num_ratings, seed=seed)
    return data.users - 1, data.items - 1, data.ratings


def _train(stepper, users, items, ratings, num_users, num_items, epochs, batch, lr, l2=0.1, seed=0, plan=None):
    rng = np.random.default_rng(seed)
    plan = plan or mf_kernel.make_plan(users, items, ratings, num_users, num_items, batch, seed)
    P, Q = rng.normal(0, 0.01, (num_users, 9)), rng.normal(0, 0.01, (num_items, 9))
    P[:, -1] = Q[:, -1] = 0  # biases start at 0, as the network's do
    state = mf_kernel.State.start(P, Q, float(np.mean(ratings)))
    errors = []
    for epoch in range(epochs):
        seen, squared = mf_kernel.run_epoch(state, plan, stepper, epoch, seed, lr, l2, 0.0)
        errors.append(np.sqrt(squared / seen))
    return state, errors


def _rmse(state: mf_kernel.State, users, items, ratings) -> float:
    P, Q = state.P, state.Q
    predicted = np.einsum("ij,ij->i", P[users, :-1], Q[items, :-1]) + P[users, -1] + Q[items, -1] + state.mu[0]
    return float(np.sqrt(np.mean((np.clip(predicted, 1, 5) - ratings) ** 2)))


def test_the_plan_groups_each_batch_by_user_and_by_item():
    users, items, ratings = _data()
    plan = mf_kernel.make_plan(users, items, ratings, 60, 80, 256, seed=3)
    assert plan.batches == -(-len(ratings) // 256) and plan.bounds[-1] == len(ratings)
    for batch in range(plan.batches):
        start, end = plan.bounds[batch], plan.bounds[batch + 1]
        u, by_item = plan.u[start:end], plan.by_item[start:end]
        assert np.all(np.diff(u) >= 0)  # grouped by user
        assert np.all(np.diff(plan.i[by_item]) >= 0) and sorted(by_item) == list(range(start, end))
        assert plan.group[start] == 0 and np.array_equal(np.diff(plan.group[start:end]) != 0, np.diff(u) != 0)
    # every rating exactly once, with its own user, item and rating
    original = sorted(zip(users.tolist(), items.tolist(), ratings.tolist(), strict=True))
    assert sorted(zip(plan.u.tolist(), plan.i.tolist(), plan.r.tolist(), strict=True)) == original


def test_the_compiled_step_computes_numpys_step():
    """The same plan, start and steps: numba's passes (threads, no locks) and numpy's array operations agree to
    float rounding over several epochs of lazy Adam, with plans equal to the element."""
    if not mf_kernel.available():
        pytest.skip("numba is not installed")
    users, items, ratings = _data()
    compiled_plan = mf_kernel.make_plan(users, items, ratings, 60, 80, 256, seed=0)
    numpy_plan = mf_kernel.make_plan(users, items, ratings, 60, 80, 256, seed=0, compiled=False)
    for name in ("u", "i", "r", "by_item", "group", "bounds"):
        np.testing.assert_array_equal(getattr(numpy_plan, name), getattr(compiled_plan, name), err_msg=name)
    compiled, compiled_errors = _train(mf_kernel.CompiledSteps(threads=2), users, items, ratings, 60, 80, 5, 256, 0.01)
    reference, reference_errors = _train(mf_kernel.NumpySteps(), users, items, ratings, 60, 80, 5, 256, 0.01)
    np.testing.assert_allclose(compiled_errors, reference_errors, rtol=1e-5)
    np.testing.assert_allclose(compiled.P, reference.P, atol=1e-4)
    np.testing.assert_allclose(compiled.Q, reference.Q, atol=1e-4)
    np.testing.assert_allclose(compiled.mu, reference.mu, atol=1e-5)


@pytest.mark.parametrize("stepper", ["numba", "numpy"])
def test_the_loop_learns_the_planted_structure(stepper):
    """Planted rank-8 ratings with noise 0.8: held-out RMSE well below predicting the mean, near the noise
    floor; numba's loop as good as numpy's."""
    if stepper == "numba" and not mf_kernel.available():
        pytest.skip("numba is not installed")
    data = synthetic.generate(num_users=400, num_items=300, num_ratings=60_000, seed=1)
    train, test = data.split(0.1, seed=1)
    users, items, ratings = train.users - 1, train.items - 1, train.ratings
    steps = mf_kernel.CompiledSteps(threads=2) if stepper == "numba" else mf_kernel.NumpySteps()
    state, errors = _train(steps, users, items, ratings, 400, 300, epochs=12, batch=2048, lr=0.02)
    baseline = test.global_mean_rmse(train)
    held_out = _rmse(state, test.users - 1, test.items - 1, test.ratings)
    assert errors[-1] < errors[0] - 0.1
    assert held_out < baseline - 0.15, (held_out, baseline)
    if stepper == "numba":
        reference, _ = _train(mf_kernel.NumpySteps(), users, items, ratings, 400, 300, epochs=12, batch=2048, lr=0.02)
        assert held_out == pytest.approx(_rmse(reference, test.users - 1, test.items - 1, test.ratings), abs=2e-3)


def test_warm_compiles_or_loads_the_kernels():
    if not mf_kernel.available():
        pytest.skip("numba is not installed")
    assert mf_kernel.warm() >= 0
    assert "numba" in mf_kernel.describe(mf_kernel.steps())
