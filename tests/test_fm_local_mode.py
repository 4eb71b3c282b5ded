"""fm-client's real launch path (SageMaker SDK v2 Estimator -> deploy -> JSON predictor) in local mode: the
course's MNIST "is it a 0" job on the shipped sample, evaluated through the endpoint with a confusion matrix."""

from __future__ import annotations

import shutil

import pytest

from byoc_runtime.codecs import recordio_protobuf
from fm_client import evaluate, mnist
from fm_client.launcher import FMLauncher
from tests.images import build_image

pytestmark = pytest.mark.docker


def test_mnist_fit_deploy_evaluate_in_local_mode(tmp_path):
    x, y = mnist.load_binary(mnist.SAMPLE_DIR, "train")
    tx, ty = mnist.load_binary(mnist.SAMPLE_DIR, "test")
    for name, (features, labels) in {"train": (x, y), "test": (tx, ty)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.rec").write_bytes(recordio_protobuf.write_dense(features, labels))
    launcher = FMLauncher(image=build_image("fm"), local=True, workdir=tmp_path / "run")
    hp = dict(mnist.SAMPLE_HYPERPARAMETERS)
    try:
        launcher.fit(hp, tmp_path / "train", tmp_path / "test")
        assert launcher.estimator.model_data.endswith("model.tar.gz")
        predictor = launcher.deploy()
        report = evaluate.evaluate_endpoint(predictor, tx, ty, batch_size=250)
    finally:
        launcher.delete()
        shutil.rmtree(tmp_path / "run", ignore_errors=True)
    print(evaluate.format_table(report))
    assert report["examples"] == 1000
    assert report["accuracy"] > report["baseline_accuracy"] + 0.05
    assert report["f1"] > 0.85
