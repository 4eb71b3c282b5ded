"""Training in-process on the MNIST sample (needs mxnet: runs where it is installed, e.g. inside the image)."""

from __future__ import annotations

import json

import numpy as np
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


def conv_shapes(net) -> list[tuple[int, ...]]:
    return [p.data().shape for name, p in net.collect_params().items() if "conv" in name and name.endswith("weight")]


def test_conv_channels_and_kernels_set_the_cnn_and_the_course_network_stays_reachable(opt_ml):
    from gluon_cnn import networks

    for channels, kernels, expected in (((20, 50), (5,), [(20, 5), (50, 5)]), ((32, 64), (5, 3), [(32, 5), (64, 3)])):
        net = networks.cnn(10, channels=channels, kernels=kernels)
        net.initialize()
        net(mx.nd.zeros((1, 1, 28, 28)))
        assert [(s[0], s[2]) for s in conv_shapes(net)] == expected
    assert train.SPEC["conv_channels"].default == [32, 64]
    assert train.SPEC["conv_kernels"].default == [5, 3]
    assert train.SPEC["conv_padding"].default == "valid"
    course = {"conv_channels": "20,50", "conv_kernels": "5"}
    base = opt_ml({"network": "cnn", "epochs": 1, "log_interval": 0, **course})
    train.train(TrainingEnv.load())
    model = serving.model_fn(str(base / "model"))
    assert [(s[0], s[2], s[3]) for s in conv_shapes(model.net)] == [(20, 5, 5), (50, 5, 5)]


def test_same_padding_keeps_the_resolution_and_a_third_convolution_fits():
    from gluon_cnn import networks

    net = networks.cnn(10, channels=(8, 16, 32), kernels=(3,), padding="same")
    net.initialize()
    assert net(mx.nd.zeros((2, 1, 28, 28))).shape == (2, 10)
    flat = [p.data().shape for name, p in net.collect_params().items() if "dense0_weight" in name]
    assert flat == [(512, 32 * 3 * 3)]  # 28 -> 14 -> 7 -> 3


@pytest.mark.parametrize(
    "options, message",
    [
        ({"conv_kernels": "5,5,5"}, "3 sizes for 2 convolutions"),
        ({"conv_channels": "8,16,32", "conv_kernels": "5"}, "leave no pixels"),
    ],
)
def test_convolutions_that_do_not_fit_are_refused_before_training(opt_ml, options, message):
    opt_ml({"network": "cnn", **options})
    with pytest.raises(HyperparameterError, match=message):
        train.train(TrainingEnv.load())


def test_the_learning_rate_warms_up_then_decays_and_the_warm_up_takes_at_most_half_the_steps():
    hp = {"lr_schedule": "cosine", "epochs": 4, "learning_rate": 0.2, "warmup_epochs": 1.0}
    schedule = train.learning_rate_schedule(hp, batches=10)
    rates = [schedule(step) for step in (0, 5, 10, 25, 40)]
    assert rates[0] == 0.0 and abs(rates[1] - 0.1) < 1e-9 and abs(rates[2] - 0.2) < 1e-9
    assert abs(rates[3] - 0.1) < 1e-9 and rates[4] == 0.0  # cosine: half-way down half-way through
    short = train.learning_rate_schedule({**hp, "epochs": 1}, batches=10)  # 1 epoch: 5 steps up, 5 down
    assert abs(short(5) - 0.2) < 1e-9 and short(10) == 0.0
    assert train.learning_rate_schedule({**hp, "lr_schedule": "constant"}, batches=10) is None
    assert train.SPEC["learning_rate"].default == 0.2 and train.SPEC["warmup_epochs"].default == 1.0


def test_flip_average_is_the_mean_of_an_image_and_its_mirror_and_is_exported(tmp_path):
    from gluon_cnn import networks

    net = networks.cnn(10, batch_norm=True, channels=(8, 16))
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(4, 1, 28, 28))
    plain, mirrored = net(x), net(x.flip(axis=3))
    net.flip_average = True
    net.hybridize(static_alloc=True, static_shape=True)
    assert abs(net(x) - (plain + mirrored) / 2).max().asscalar() < 1e-5
    net.export(str(tmp_path / "m"), epoch=0)
    loaded = mx.gluon.SymbolBlock.imports(str(tmp_path / "m-symbol.json"), ["data"], str(tmp_path / "m-0000.params"))
    assert abs(loaded(x) - (plain + mirrored) / 2).max().asscalar() < 1e-5


def test_a_model_trained_on_flips_answers_an_image_and_its_mirror_alike(opt_ml):
    base = opt_ml({"network": "cnn", "epochs": 1, "log_interval": 0, "augment": "flip", "conv_channels": "8,16"})
    train.train(TrainingEnv.load())
    model = serving.model_fn(str(base / "model"))
    images = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    probabilities = model.probabilities(images)
    assert abs(probabilities - model.probabilities(images[..., ::-1].copy())).max() < 1e-5
    assert not np.allclose(probabilities[0], probabilities[1])  # not a constant answer


def test_augment_auto_shifts_digits_and_nothing_else():
    assert train.auto_augment(train.CLASS_PRESETS["mnist"]) == "shift"
    assert train.auto_augment(train.CLASS_PRESETS["fashion-mnist"]) == "none"
    assert train.auto_augment(("cat", "dog")) == "none"
