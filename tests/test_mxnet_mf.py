"""mxnet-mf in its real image: train on generated MovieLens-format data with a planted low-rank
structure, serve ratings / recommendations / similar items, fail clearly, resume from checkpoints, and
train on two hosts (dist_sync) in SageMaker local mode to the same quality as on one."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from local.opt_ml import ChannelSpec
from mxnet_mf import synthetic
from mxnet_mf.lambda_function import http_invoker, make_handler
from tests.images import build_image

pytestmark = pytest.mark.docker
# Small enough for seconds of training, structured enough that MF must beat the mean by far.
HYPERPARAMETERS = {"model": "mf", "num_factors": 16, "epochs": 12, "learning_rate": 0.01, "l2": 0.05, "seed": 1}


@pytest.fixture(scope="module")
def image():
    return build_image("mxnet-mf")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("movielens")
    ratings = synthetic.generate(
        num_users=200, num_items=300, num_ratings=12000, rank=8, noise=0.25, factor_scale=1.0, planted_pairs=4, seed=7
    )
    train, test = ratings.split(0.2, seed=1)
    train.write(root / "train" / "ua.base", "u.data")
    test.write(root / "test" / "ratings.csv", "ratings.csv")  # formats may differ between channels
    ratings.write_titles(root / "items" / "u.item", "u.item")
    return root, ratings, train, test


def channels(root):
    return {name: ChannelSpec(root / name) for name in ("train", "test", "items")}


@pytest.fixture(scope="module")
def trained(harness, image, data):
    root, *_ = data
    result = harness.train(image, HYPERPARAMETERS, channels(root))
    assert result.ok, result.logs()
    return result


@pytest.fixture(scope="module")
def endpoint(harness, image, trained):
    with harness.serve(image, trained.model_archive) as endpoint:
        yield endpoint


def metrics_of(result):
    return json.loads((result.model_dir / "metrics.json").read_text())


def test_training_beats_the_global_mean_by_far(trained, data):
    _, _, train, test = data
    metrics = metrics_of(trained)
    baseline = test.global_mean_rmse(train)
    assert metrics["validation_baseline_rmse"] == pytest.approx(baseline, rel=1e-4)
    assert metrics["validation_rmse"] <= 0.6 * baseline, metrics
    logs = trained.master.logs
    assert "#metric: validation_rmse=" in logs and "#metric: train_rmse=" in logs
    assert (trained.output_data_dir / "metrics.json").exists()


def test_the_default_ensemble_is_weighted_on_held_out_ratings(trained, harness, image, data):
    """model=mf: MF + I-AutoRec, the MF's weight fitted on 5 % of the training ratings and the served model one
    MF with both members' factors; autorec_units=0 is the MF alone on every rating."""
    root, _, train, _ = data
    metrics = metrics_of(trained)
    assert metrics["held_out_ratings"] == round(0.05 * len(train.ratings)) and 0.0 <= metrics["blend_weight"] <= 1.0
    assert metrics["held_out_blend_rmse"] < 0.6 * metrics["validation_baseline_rmse"]
    with np.load(trained.model_dir / "model.npz") as arrays:
        assert arrays["param_user_embedding"].shape[1] == HYPERPARAMETERS["num_factors"] + 500
    logs = trained.master.logs
    assert "I-AutoRec: " in logs and "the served model: " in logs and "#metric: validation_blend_rmse=" in logs
    # the served figure is the last validation_rmse line, the ensemble's
    assert logs.rsplit("#metric: validation_rmse=", 1)[1].split()[0] == f"{metrics['validation_rmse']:.6g}"

    alone = harness.train(image, {**HYPERPARAMETERS, "autorec_units": 0}, channels(root))
    assert alone.ok, alone.logs()
    assert "blend_weight" not in metrics_of(alone) and "I-AutoRec" not in alone.master.logs
    with np.load(alone.model_dir / "model.npz") as arrays:
        assert arrays["param_user_embedding"].shape[1] == HYPERPARAMETERS["num_factors"]


def test_rating_requests_in_both_shapes(endpoint, data):
    _, _, _, test = data
    users, items, ratings = test.users[:200].tolist(), test.items[:200].tolist(), test.ratings[:200]
    body = {"instances": [{"in0": [u], "in1": [i]} for u, i in zip(users, items, strict=True)]}
    response = endpoint.invoke(json.dumps(body))
    assert response.status_code == 200, response.text
    predicted = np.array([p["scores"][0] for p in response.json()["predictions"]])
    named = {"instances": [{"user_id": u, "item_id": i} for u, i in zip(users, items, strict=True)]}
    assert np.allclose([p["rating"] for p in endpoint.invoke(json.dumps(named)).json()["predictions"]], predicted)
    assert np.sqrt(np.mean((predicted - ratings) ** 2)) < 0.6 * test.global_mean_rmse()


def test_recommendations_skip_rated_items_and_carry_titles(endpoint, data):
    _, _, train, _ = data
    user = int(train.users[0])
    rated = set(train.items[train.users == user].tolist())
    body = {"instances": [{"user_id": user, "k": 10}]}
    answer = endpoint.invoke(json.dumps(body)).json()["predictions"][0]
    recommended = [r["item_id"] for r in answer["recommendations"]]
    assert len(recommended) == 10 and not rated & set(recommended)
    assert answer["recommendations"][0]["title"] == synthetic.title_of(recommended[0])


def test_similar_items_find_the_planted_twin(endpoint, data):
    _, ratings, _, _ = data
    body = {"instances": [{"item_id": a, "k": 1} for a, _ in ratings.twins]}
    answers = endpoint.invoke(json.dumps(body)).json()["predictions"]
    found = [answer["similar_items"][0]["item_id"] for answer in answers]
    assert found == [b for _, b in ratings.twins]


def test_unknown_ids_and_malformed_requests_are_4xx_json(endpoint):
    response = endpoint.invoke(json.dumps({"instances": [{"user_id": 999999, "item_id": 1}]}))
    assert response.status_code == 400 and "999999" in response.json()["error"]
    for body, content_type in [(b"{oops", "application/json"), (b"1,2,3\n", "text/csv"), (b"x", "text/html")]:
        response = endpoint.invoke(body, content_type=content_type)
        assert 400 <= response.status_code < 500 and set(response.json()) == {"error", "error_type"}
    assert endpoint.ping().status_code == 200


def test_lambda_handler_against_the_running_container(endpoint, data):
    _, _, train, _ = data
    handler = make_handler(http_invoker(endpoint.url))
    user, item = int(train.users[0]), int(train.items[0])
    response = handler({"type": "rating", "user_id": user, "item_id": item}, None)
    assert response["statusCode"] == 200 and 1 <= json.loads(response["body"])["rating"] <= 5
    response = handler({"body": json.dumps({"type": "recommendation", "user_id": user, "k": 3})}, None)
    assert len(json.loads(response["body"])["recommendations"]) == 3
    assert handler({"type": "rating", "user_id": -5, "item_id": item}, None)["statusCode"] == 400


def test_bad_hyperparameter_names_itself_in_the_failure_file(harness, image, data):
    root, *_ = data
    result = harness.train(image, {**HYPERPARAMETERS, "num_factors": 0}, channels(root))
    assert result.master.exit_code != 0
    assert result.master.failure.splitlines()[0].startswith("Hyperparameter 'num_factors' is invalid")


def test_checkpoint_resume_continues_from_the_saved_epoch(harness, image, data, tmp_path):
    root, *_ = data
    first = harness.train(image, {**HYPERPARAMETERS, "epochs": 3}, channels(root), checkpoint_dir=tmp_path)
    assert first.ok, first.logs()
    second = harness.train(image, {**HYPERPARAMETERS, "epochs": 5}, channels(root), checkpoint_dir=tmp_path)
    assert second.ok, second.logs()
    assert "resuming from checkpoint at epoch 3" in second.master.logs
    metrics = metrics_of(second)
    assert metrics["resumed_from_epoch"] == 3 and [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5]
    assert "epoch=4" in second.master.logs and "epoch=1\n" not in second.master.logs.split("resuming")[1]


def test_the_training_image_loads_the_compiled_kernel_and_serving_never_imports_numba(image):
    """The large-data loop's kernel is compiled into numba's cache at image build, so a job loads it (a fraction
    of a second) instead of compiling it (about 10 s); serving imports no numba, and the serve-only image has
    none."""
    import subprocess

    def run(tag: str, code: str) -> str:
        command = ["docker", "run", "--rm", "--entrypoint", "python", tag, "-c", code]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    serving = "import sys, importlib.util, mxnet_mf.serving; assert 'numba' not in sys.modules; "
    out = run(image, serving + "from mxnet_mf import mf_kernel as k; print(k.describe(k.steps())); print(k.warm())")
    description, seconds = out.strip().splitlines()[-2:]
    assert description.startswith("numba ") and float(seconds) < 3, out
    run(build_image("mxnet-mf", serve=True), serving + "assert importlib.util.find_spec('numba') is None")


def test_two_hosts_in_local_mode_reach_the_quality_of_one(trained, image, data):
    from local.sdk import local_run

    root, *_ = data
    with local_run(image) as run:
        run.fit({name: root / name for name in ("train", "test", "items")}, HYPERPARAMETERS, instance_count=2)
        with tarfile.open(run.workdir / "output" / "model.tar.gz") as tar:
            two_hosts = json.load(tar.extractfile("metrics.json"))
    one_host = metrics_of(trained)
    assert two_hosts["validation_rmse"] <= 1.1 * one_host["validation_rmse"], (two_hosts, one_host)
    assert two_hosts["validation_rmse"] <= 0.6 * one_host["validation_baseline_rmse"]
