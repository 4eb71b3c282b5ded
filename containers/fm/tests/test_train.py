"""train() on a real /opt/ml tree, in-process: hyperparameters, data checks, metrics, model files, resume."""

import json

import numpy as np
import pytest

from byoc_runtime.checkpoints import CheckpointStore
from byoc_runtime.codecs import recordio_protobuf
from byoc_runtime.errors import DataError, HyperparameterError
from byoc_runtime.paths import SageMakerPaths
from byoc_runtime.training_env import TrainingEnv
from fm_algo import artifact, spec
from fm_algo.train import CHECKPOINT_NAME, train
from local.opt_ml import ChannelSpec, OptMlTree

BASE_HP = {"feature_dim": 20, "num_factors": 4, "predictor_type": "binary_classifier"}


def sparse_classification(tmp_path, rows=600, seed=0):
    """Label 1 when features 3 and 7 are both present: a pure pairwise interaction (linear models fail)."""
    rng = np.random.default_rng(seed)
    present = rng.random((rows, 20)) < 0.3
    labels = (present[:, 3] & present[:, 7]).astype(np.float32)
    keys = [np.flatnonzero(r) for r in present]
    body = recordio_protobuf.write_sparse([(k, np.ones(k.size, np.float32)) for k in keys], labels, num_cols=20)
    path = tmp_path / f"data-{seed}.rec"
    path.write_bytes(body)
    return path


def run(tmp_path, hp, channels, checkpoint_dir=None):
    root = tmp_path / "opt_ml"
    OptMlTree.create(root, hp, channels, ["algo-1"], "algo-1")
    if checkpoint_dir is not None:
        (root / "input" / "config" / "checkpointconfig.json").write_text(json.dumps({"LocalPath": str(checkpoint_dir)}))
    for name, channel in channels.items():
        target = root / "input" / "data" / name
        target.mkdir(parents=True, exist_ok=True)
        (target / channel.source.name).write_bytes(channel.source.read_bytes())
    env = TrainingEnv.load(SageMakerPaths(root))
    train(env)
    return env


def test_learns_a_sparse_interaction_and_reports_builtin_metrics(tmp_path, capsys):
    channels = {
        "train": ChannelSpec(sparse_classification(tmp_path), "application/x-recordio-protobuf"),
        "test": ChannelSpec(sparse_classification(tmp_path, 300, seed=1), "application/x-recordio-protobuf"),
    }
    hp = {
        **BASE_HP,
        "epochs": 20,
        "mini_batch_size": 50,
        "factors_lr": 0.05,
        "linear_lr": 0.05,
        "factors_init_sigma": 0.1,
    }
    env = run(tmp_path, hp, channels)
    metrics = json.loads((env.paths.output_data_dir / "metrics.json").read_text())
    assert metrics["test:binary_classification_accuracy"] > 0.97
    assert metrics["test:binary_f_1.000"] > 0.9
    logs = capsys.readouterr().out
    assert "#test_score (algo-1) : ('binary_f_1.000'," in logs
    assert "#metric: test:binary_classification_cross_entropy=" in logs
    assert artifact.load(env.paths.model_dir).feature_dim == 20
    assert (env.checkpoint_dir / f"fm-{20:06d}" / CHECKPOINT_NAME).exists()


def test_resumes_from_the_checkpoint(tmp_path, caplog):
    channels = {"train": ChannelSpec(sparse_classification(tmp_path), "application/x-recordio-protobuf")}
    checkpoints = tmp_path / "checkpoints"
    run(tmp_path / "a", {**BASE_HP, "epochs": 2}, channels, checkpoints)
    caplog.set_level("INFO", logger="fm_algo")
    run(tmp_path / "b", {**BASE_HP, "epochs": 3}, channels, checkpoints)
    assert "after 2 epochs" in caplog.text
    saved = np.load(CheckpointStore(checkpoints, "fm").latest().file(CHECKPOINT_NAME))
    assert int(saved["epoch"]) == 3 and int(saved["steps"]) == 3  # 600 rows, mini_batch_size 1000: a step per epoch


def test_csv_training_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = x @ [1, -1, 0.5, 0, 2] + 1
    path = tmp_path / "train.csv"
    np.savetxt(path, np.c_[y, x], delimiter=",")
    hp = {
        "feature_dim": 5,
        "num_factors": 2,
        "predictor_type": "regressor",
        "epochs": 30,
        "mini_batch_size": 20,
        "linear_lr": 0.05,
        "bias_lr": 0.05,
    }
    env = run(tmp_path, hp, {"train": ChannelSpec(path, "text/csv")})
    model = artifact.load(env.paths.model_dir)
    assert np.sqrt(np.mean((model.scores(x.astype(np.float32)) - y) ** 2)) < 0.3 * np.std(y)


def test_feature_dim_must_match_the_data(tmp_path):
    channels = {"train": ChannelSpec(sparse_classification(tmp_path), "application/x-recordio-protobuf")}
    with pytest.raises(DataError, match="feature_dim is 21"):
        run(tmp_path, {**BASE_HP, "feature_dim": 21}, channels)


def test_classifier_labels_must_be_binary(tmp_path):
    path = tmp_path / "bad.rec"
    path.write_bytes(recordio_protobuf.write_dense(np.ones((3, 20), np.float32), np.array([0, 1, 2], np.float32)))
    with pytest.raises(DataError, match="must be 0 or 1"):
        run(tmp_path, BASE_HP, {"train": ChannelSpec(path, "application/x-recordio-protobuf")})


@pytest.mark.parametrize(
    "overrides, name",
    [
        ({"predictor_type": "multiclass_classifier"}, "predictor_type"),
        ({"num_factors": 0}, "num_factors"),
        ({"epochs": "many"}, "epochs"),
        ({"factors_lr": -1}, "factors_lr"),
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"bias_init_method": "uniform"}, "bias_init_scale"),
        ({"clip_gradient": 0}, "clip_gradient"),
    ],
)
def test_bad_hyperparameters_name_themselves(overrides, name):
    with pytest.raises(HyperparameterError) as error:
        spec.parse({**BASE_HP, **overrides})
    assert error.value.name == name


def test_required_are_the_builtins_and_four_defaults_ours():
    with pytest.raises(HyperparameterError, match="'feature_dim'"):
        spec.parse({"num_factors": 2, "predictor_type": "regressor"})
    hp = spec.parse({**BASE_HP, "eps": "None"})
    # ours (the built-in's: epochs 1, linear_lr 0.001, factors_lr 0.0001, factors_init_sigma 0.001)
    assert (hp["epochs"], hp["mini_batch_size"]) == (10, 1000)
    assert (hp["bias_lr"], hp["linear_lr"], hp["factors_lr"]) == (0.1, 0.002, 0.002)
    assert (hp["bias_wd"], hp["linear_wd"], hp["factors_wd"]) == (0.01, 0.001, 0.00001)
    assert (hp["bias_init_sigma"], hp["linear_init_sigma"], hp["factors_init_sigma"]) == (0.01, 0.01, 0.01)
    assert hp["eps"] is None
