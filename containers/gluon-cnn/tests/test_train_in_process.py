"""Training in-process on the MNIST sample (needs mxnet: runs where it is installed, e.g. inside the image)."""

from __future__ import annotations

import json

import pytest

from byoc_runtime.errors import HyperparameterError
from byoc_runtime.training_env import TrainingEnv

mx = pytest.importorskip("mxnet")

from gluon_cnn import serving, train  # noqa: E402


@pytest.mark.parametrize("network, floor", [("mlp", 0.8), ("cnn", 0.85)])
def test_trains_to_an_accuracy_a_broken_model_cannot_reach(opt_ml, network, floor):
    base = opt_ml({"network": network, "epochs": 3, "log_interval": 0})
    train.train(TrainingEnv.load())
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["validation_accuracy"] > floor, metrics
    assert metrics["epochs"] == 3 and len(metrics["history"]) == 3
    model = serving.model_fn(str(base / "model"))
    assert model.class_names == [str(d) for d in range(10)]


def test_resumes_from_the_last_checkpoint(opt_ml, capsys):
    base = opt_ml({"network": "mlp", "epochs": 1, "log_interval": 0})
    train.train(TrainingEnv.load())
    opt_ml({"network": "mlp", "epochs": 2, "log_interval": 0})
    train.train(TrainingEnv.load())
    assert "resuming from checkpoint at epoch 1" in capsys.readouterr().out
    history = json.loads((base / "output" / "data" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]


def test_checkpoint_of_another_network_is_refused(opt_ml):
    opt_ml({"network": "mlp", "epochs": 1})
    train.train(TrainingEnv.load())
    opt_ml({"network": "cnn", "epochs": 2})
    with pytest.raises(Exception, match="checkpoint .* is of network 'mlp'"):
        train.train(TrainingEnv.load())


def test_bad_hyperparameter_names_itself(opt_ml):
    opt_ml({"network": "resnet"})
    with pytest.raises(HyperparameterError, match="'network'"):
        train.train(TrainingEnv.load())


def test_a_finished_job_restarted_still_writes_the_model(opt_ml):
    base = opt_ml({"network": "mlp", "epochs": 1, "log_interval": 0})
    train.train(TrainingEnv.load())
    for path in (base / "model").iterdir():
        path.unlink()
    train.train(TrainingEnv.load())  # resumes at epoch 1 of 1: nothing to train, the model is written again
    assert (base / "model" / "model-symbol.json").exists()


def test_label_smoothing_zero_is_plain_cross_entropy_and_smoothing_spreads_the_target():
    from gluon_cnn import loop

    logits = mx.nd.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    labels = mx.nd.array([0, 2])
    plain = mx.gluon.loss.SoftmaxCrossEntropyLoss()(logits, labels).asnumpy()
    assert abs(loop.smoothed_cross_entropy(logits, labels, 0.0).asnumpy() - plain).max() < 1e-6
    log_p = mx.nd.log_softmax(logits, axis=1).asnumpy()
    target = [[0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3], [0.1 / 3, 0.1 / 3, 0.9 + 0.1 / 3]]
    expected = -(log_p * target).sum(axis=1)
    assert abs(loop.smoothed_cross_entropy(logits, labels, 0.1).asnumpy() - expected).max() < 1e-5
