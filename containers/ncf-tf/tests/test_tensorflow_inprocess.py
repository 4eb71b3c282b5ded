"""Training and serving in this process (TensorFlow needed; skipped where it is not installed, e.g. the CI host:
the docker tests cover the same paths in the image)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf_keras")

from byoc_runtime import interrupt  # noqa: E402
from byoc_runtime.app import create_app  # noqa: E402
from byoc_runtime.checkpoints import CheckpointStore  # noqa: E402
from byoc_runtime.errors import HyperparameterError  # noqa: E402
from byoc_runtime.handlers import Handlers  # noqa: E402
from byoc_runtime.paths import SageMakerPaths  # noqa: E402
from byoc_runtime.serving_settings import ServingSettings  # noqa: E402
from byoc_runtime.training_env import TrainingEnv  # noqa: E402
from ncf_tf import serving, synthetic  # noqa: E402
from ncf_tf.train import train  # noqa: E402

FAST = {"epochs": 6, "pretrain": False, "batch_size": 128, "eval_negatives": 50}


def make_env(root, hyperparameters, rows=None):
    paths = SageMakerPaths(root)
    (root / "input" / "config").mkdir(parents=True, exist_ok=True)
    encoded = {k: json.dumps(v) for k, v in hyperparameters.items()}
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(encoded))
    synthetic.write(synthetic.planted_ratings() if rows is None else rows, root / "input" / "data" / "training")
    return TrainingEnv.load(paths)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("opt_ml")
    env = make_env(root, FAST)
    train(env)
    return env


def test_training_beats_popularity_and_exports(trained):
    metrics = json.loads((trained.paths.output_data_dir / "metrics.json").read_text())
    assert metrics["hr_at_10"] > metrics["popularity_hr_at_10"] + 0.25, metrics
    assert metrics["test_auc"] > 0.8
    model_dir = trained.paths.model_dir
    assert (model_dir / "000000001" / "saved_model.pb").exists()
    assert {p.name for p in (model_dir / "ncf").iterdir()} == {"mappings.npz", "seen.npz", "meta.json"}


def test_resume_continues_after_the_last_checkpoint(tmp_path, capsys):
    env = make_env(tmp_path, {**FAST, "epochs": 2})
    train(env)
    env = make_env(tmp_path, {**FAST, "epochs": 3})
    train(env)
    out = capsys.readouterr().out
    assert "resuming neumf from the checkpoint after epoch 2" in out
    losses = [line for line in out.splitlines() if line.startswith("#metric: train_loss=")]
    assert [line.rsplit(" ", 1)[1] for line in losses] == ["epoch=1", "epoch=2", "epoch=3"]


def test_sigterm_stops_after_a_checkpoint(tmp_path, monkeypatch):
    env = make_env(tmp_path, {**FAST, "epochs": 5})
    monkeypatch.setattr(interrupt, "requested", lambda: True)
    train(env)
    saved = CheckpointStore(env.checkpoint_dir / "algo-1", "neumf").latest()
    assert saved.step == 1 and saved.meta == {"phase": "neumf", "epoch": 1}
    assert not (env.paths.model_dir / "000000001").exists()


def test_bad_layers_name_the_hyperparameter(tmp_path):
    with pytest.raises(HyperparameterError, match="'layers'"):
        train(make_env(tmp_path, {"layers": "63,32"}))


@pytest.fixture(scope="module")
def client(trained):
    settings = ServingSettings(model_dir=trained.paths.model_dir, family="ncf_tf.serving")
    handlers = Handlers().overridden_by(serving)
    return create_app(settings, handlers, background_load=False).test_client()


def test_serving_both_request_forms_agree(client):
    a = client.post("/invocations", json={"instances": [{"input_1": 0, "input_2": 5}, {"input_1": 3, "input_2": 7}]})
    b = client.post("/invocations", json={"inputs": {"input_1": [0, 3], "input_2": [5, 7]}})
    assert a.status_code == b.status_code == 200
    predictions = a.get_json()["predictions"]
    assert np.array(predictions).shape == (2, 1) and predictions == b.get_json()["predictions"]
    one_hot = np.eye(200)[[0, 3]].tolist(), np.eye(300)[[5, 7]].tolist()
    c = client.post("/invocations", json={"inputs": {"input_1": one_hot[0], "input_2": one_hot[1]}})
    assert c.get_json()["predictions"] == predictions


def test_top_k_leaves_out_the_training_items(client, trained):
    rows = synthetic.planted_ratings()
    response = client.post("/invocations", json={"instances": [{"user_id": 1, "top_k": 10}]})
    assert response.status_code == 200, response.get_data()
    answer = response.get_json()["predictions"][0]
    mine = rows[rows[:, 0] == 1]
    trained_on = set(mine[mine[:, 3] != mine[:, 3].max(), 1].tolist())  # all but the held-out latest
    assert answer["user_id"] == 1 and len(answer["item_ids"]) == 10 and not trained_on & set(answer["item_ids"])
    assert answer["scores"] == sorted(answer["scores"], reverse=True)


def test_bad_requests_are_4xx_json(client):
    for body, status in [({"instances": [{"input_1": 999, "input_2": 0}]}, 400), ({"nothing": 1}, 400)]:
        response = client.post("/invocations", json=body)
        assert response.status_code == status and set(response.get_json()) == {"error", "error_type"}
    response = client.post("/invocations", json={"instances": [{"user_id": 1}]}, headers={"Accept": "text/csv"})
    assert response.status_code == 406


def test_csv_rows_and_large_batch(client):
    response = client.post("/invocations", data="0,5\n3,7\n", headers={"Content-Type": "text/csv"})
    assert response.status_code == 200 and len(response.get_json()["predictions"]) == 2
    rng = np.random.default_rng(0)
    pairs = np.c_[rng.integers(0, 200, 100_000), rng.integers(0, 300, 100_000)].tolist()
    response = client.post("/invocations", json={"instances": pairs}, headers={"Accept": "application/x-npy"})
    assert response.status_code == 200
