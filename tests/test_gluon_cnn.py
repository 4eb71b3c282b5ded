"""The gluon-cnn image in docker: MLP and CNN train on the MNIST sample, serve JSON/NPY/PNG (16-bit and
interlaced too), refuse bad inputs with 4xx JSON (a PNG decompression bomb at once), run the course's
legacy-interface script, train on 2 hosts with dist_sync, and resume from a checkpoint after SIGTERM."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest

from byoc_runtime.checkpoints import CheckpointStore
from local.opt_ml import ChannelSpec
from tests.images import build_image

pytestmark = pytest.mark.docker
FAMILY = Path(__file__).resolve().parents[1] / "containers" / "gluon-cnn"
SAMPLE = FAMILY / "sample" / "mnist"
LEGACY = FAMILY / "tests" / "legacy_script"
QUICK = {"epochs": 3, "log_interval": 0}


def _png_fixtures():
    """The family's test-image writers (Pillow, plus the interlaced and 16-bit PNGs Pillow cannot write)."""
    spec = importlib.util.spec_from_file_location("gluon_cnn_png_fixtures", FAMILY / "tests" / "png_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PNGS = _png_fixtures()


def _idx(name: str, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.open(SAMPLE / name).read(), np.uint8, offset=offset)


TEST_X = _idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
TEST_Y = _idx("t10k-labels-idx1-ubyte.gz", 8)


@pytest.fixture(scope="module")
def image():
    return build_image("gluon-cnn")


@pytest.fixture(scope="module")
def channels(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    for channel, split in (("train", "train"), ("test", "t10k")):
        (root / channel).mkdir()
        for source in SAMPLE.glob(f"{split}-*"):
            (root / channel / source.name).write_bytes(source.read_bytes())
    return {name: ChannelSpec(root / name) for name in ("train", "test")}


def _metrics(result) -> dict:
    return json.loads((result.output_data_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def cnn(harness, image, channels):
    result = harness.train(image, {"network": "cnn", **QUICK}, channels)
    assert result.ok, result.logs()
    return result


@pytest.fixture(scope="module")
def endpoint(harness, image, cnn):
    with harness.serve(image, cnn.model_archive) as endpoint:
        yield endpoint


def test_cnn_reaches_an_accuracy_a_broken_model_cannot(cnn):
    metrics = _metrics(cnn)
    assert metrics["validation_accuracy"] > 0.85, metrics  # chance is 0.1; 3 short epochs on 2,000 images
    assert "#metric: validation_accuracy=" in cnn.master.logs
    assert {p.name for p in cnn.model_dir.iterdir()} >= {"model-symbol.json", "model-0000.params", "gluon-cnn.json"}


def test_mlp_trains_too(harness, image, channels, dump_logs_on_failure):
    result = harness.train(image, {"network": "mlp", **QUICK}, channels)
    dump_logs_on_failure(result)
    assert result.ok
    assert _metrics(result)["validation_accuracy"] > 0.8


def test_bad_hyperparameter_writes_failure_naming_it(harness, image, channels):
    result = harness.train(image, {"network": "resnet9000"}, channels)
    assert result.master.exit_code != 0
    assert result.master.failure.startswith("Hyperparameter 'network' is invalid: 'resnet9000' is not one of")


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_json_requests_single_and_batch(endpoint):
    one = endpoint.invoke(json.dumps({"instances": (TEST_X[:1] / 255.0).reshape(1, 1, 28, 28).tolist()}))
    assert one.status_code == 200, one.text
    batch = endpoint.invoke(json.dumps((TEST_X[:50] / 255.0)[:, None].tolist()))  # the course's N x 1 x 28 x 28
    predictions = batch.json()["predictions"]
    assert len(predictions) == 50 and one.json()["predictions"] == predictions[:1]
    assert np.mean(np.array(predictions) == TEST_Y[:50]) > 0.8


def test_npy_request_matches_json_and_raw_pixels_work(endpoint):
    npy = endpoint.invoke(_npy(TEST_X[:200]), "application/x-npy", accept="application/x-npy")  # uint8 0..255
    classes = np.load(io.BytesIO(npy.content), allow_pickle=False)
    assert classes.shape == (200,) and np.mean(classes == TEST_Y[:200]) > 0.8
    again = endpoint.invoke(json.dumps({"instances": (TEST_X[:200] / 255.0).reshape(200, 784).tolist()}))
    assert again.json()["predictions"] == classes.tolist()


def test_png_request_is_classified_like_the_array(endpoint):
    for i in range(5):
        expected = endpoint.invoke(json.dumps(TEST_X[i].tolist())).json()["predictions"]
        # a dark digit on white paper, 3x larger, RGB: decoded, grey-scaled, inverted and resized
        paper = np.repeat(np.kron(255 - TEST_X[i], np.ones((3, 3), np.uint8))[:, :, None], 3, axis=2)
        response = endpoint.invoke(PNGS.encode(paper), "image/png")
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == expected


def test_verbose_gives_probabilities_and_class_names(endpoint):
    body = json.dumps({"instances": TEST_X[:2].tolist()})
    verbose = endpoint.invoke(body, accept="application/json; verbose=1").json()
    assert verbose["class_names"] == [str(d) for d in range(10)]
    first = verbose["predictions"][0]
    assert set(first) == {"class", "label", "probability", "probabilities"}
    assert abs(sum(first["probabilities"]) - 1) < 1e-3 and first["probability"] == max(first["probabilities"])
    field = endpoint.invoke(json.dumps({"instances": TEST_X[:2].tolist(), "verbose": True})).json()
    assert [p["class"] for p in field["predictions"]] == [p["class"] for p in verbose["predictions"]]


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        (json.dumps({"instances": [[0.5] * 783]}), "application/json", 400),
        (json.dumps({"instances": [[["a"] * 28] * 28]}), "application/json", 400),
        (json.dumps({"instances": []}), "application/json", 400),
        ("{not json", "application/json", 400),
        (_npy(np.zeros((2, 27, 28))), "application/x-npy", 400),
        (_npy(np.full((1, 28, 28), -5.0)), "application/x-npy", 400),
        (b"\x93NUMPY garbage", "application/x-npy", 400),
        (b"GIF89a not an image we read", "image/png", 400),
        (PNGS.encode(np.zeros((4, 4), np.uint8))[:-20], "image/png", 400),
        (PNGS.encode(np.zeros((4, 4), np.uint8))[:-12], "image/png", 400),  # no IEND
        (PNGS.declaring(50_000, 50_000), "image/png", 413),
        (b"\xff\xd8\xff\xe0 truncated jpeg", "image/jpeg", 400),
        ("1,2,3", "text/csv", 415),
    ],
)
def test_bad_inputs_are_4xx_json(endpoint, body, content_type, status):
    response = endpoint.invoke(body, content_type)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "error_type"} and "Traceback" not in response.text


def test_a_png_bomb_is_refused_at_once_and_the_server_keeps_serving(endpoint):
    body = PNGS.bomb(50_000, 50_000)  # ~300 KB of valid PNG inflating to 312 MB (2.5 GB as 8-bit pixels)
    start = time.perf_counter()
    response = endpoint.invoke(body, "image/png", timeout=10)
    elapsed = time.perf_counter() - start
    assert response.status_code == 413, response.text
    assert response.json()["error_type"] == "PayloadTooLarge" and "2048x2048" in response.json()["error"]
    assert elapsed < 1.0, f"the bomb took {elapsed:.3f} s to refuse"
    expected = endpoint.invoke(json.dumps(TEST_X[0].tolist())).json()["predictions"]
    after = endpoint.invoke(PNGS.encode(255 - TEST_X[0]), "image/png")  # the next request, a good one
    assert after.status_code == 200 and after.json()["predictions"] == expected


def test_16_bit_and_interlaced_pngs_predict_like_their_8_bit_originals(endpoint):
    verbose = "application/json; verbose=1"  # compare every class probability, not only the class
    for i in range(3):
        paper = 255 - np.kron(TEST_X[i], np.ones((2, 2), np.uint8))  # a dark digit on white paper, 56x56
        original = endpoint.invoke(PNGS.encode(paper), "image/png", accept=verbose).json()["predictions"]
        wide = paper.astype(np.uint16) * 257  # the same samples at 16 bits
        variants = {
            "16-bit": PNGS.encode(wide),  # Pillow's I;16 PNG
            "interlaced": PNGS.png(paper, interlaced=True),
            "16-bit interlaced": PNGS.png(wide, interlaced=True),
            "16-bit RGB": PNGS.png(np.repeat(wide[:, :, None], 3, axis=2)),
        }
        for name, body in variants.items():
            response = endpoint.invoke(body, "image/png", accept=verbose)
            assert response.status_code == 200, (name, response.text)
            assert response.json()["predictions"] == original, name


def test_legacy_interface_script_trains_and_serves(harness, image, channels, dump_logs_on_failure):
    legacy_channels = {"training": channels["train"], "testing": channels["test"], "code": ChannelSpec(LEGACY)}
    hyperparameters = {
        "epochs": 4,
        "sagemaker_program": "legacy_mnist.py",
        "sagemaker_submit_directory": "/opt/ml/input/data/code",
    }
    result = harness.train(image, hyperparameters, legacy_channels)
    dump_logs_on_failure(result)
    assert result.ok, result.logs()
    assert {"model.json", "model.params", "code"} <= {p.name for p in result.model_dir.iterdir()}
    accuracies = [float(line.rsplit("=", 1)[1]) for line in result.master.logs.splitlines() if "validation:" in line]
    assert len(accuracies) == 4 and accuracies[-1] > 0.8  # unseeded, as the course's script: margin kept
    with harness.serve(image, result.model_archive, environment={"SAGEMAKER_PROGRAM": "legacy_mnist.py"}) as served:
        dump_logs_on_failure(served)
        response = served.invoke(json.dumps((TEST_X[:20] / 255.0).tolist()))
        assert response.status_code == 200, response.text
        assert np.mean(np.array(response.json()) == TEST_Y[:20]) > 0.7
    # Our own handlers serve the legacy model.json + model.params as well.
    with harness.serve(image, result.model_archive) as served:
        assert len(served.invoke(json.dumps(TEST_X[:3].tolist())).json()["predictions"]) == 3


def test_two_hosts_with_dist_sync_match_one_host(harness, image, channels, dump_logs_on_failure):
    hyperparameters = {"network": "mlp", "epochs": 3, "log_interval": 0}
    two = harness.train(image, hyperparameters, channels, instance_count=2)
    dump_logs_on_failure(two)
    assert two.ok, two.logs()
    assert "kvstore dist_sync, worker" in two.master.logs and "of 2" in two.master.logs
    one = harness.train(image, hyperparameters, channels)
    assert one.ok, one.logs()
    accuracy_two, accuracy_one = _metrics(two)["validation_accuracy"], _metrics(one)["validation_accuracy"]
    assert accuracy_two > 0.8 and abs(accuracy_two - accuracy_one) < 0.03, (accuracy_one, accuracy_two)
    assert (two.model_dir / "model-symbol.json").exists()
    assert not list((two.hosts[1].tree.root / "model").iterdir()), "only the master writes the model"


def test_two_hosts_in_sdk_local_mode_match_one_host(harness, image, channels):
    """The same dist_sync job through the SageMaker SDK's local mode (Estimator instance_count=2)."""
    import tarfile

    from local.sdk import local_run

    hyperparameters = {"network": "mlp", "epochs": 3, "log_interval": 0}
    with local_run(image) as run:
        run.fit({name: spec.source for name, spec in channels.items()}, hyperparameters, instance_count=2)
        with tarfile.open(run.workdir / "output" / "output.tar.gz") as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("metrics.json"))
            two = json.load(tar.extractfile(member))
    one = harness.train(image, hyperparameters, channels)
    assert one.ok, one.logs()
    accuracy_one = _metrics(one)["validation_accuracy"]
    assert two["validation_accuracy"] > 0.8 and abs(two["validation_accuracy"] - accuracy_one) < 0.03


def test_sigterm_checkpoints_then_resume(harness, image, channels, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    store = CheckpointStore(checkpoints, "gluon-cnn")

    def stop_after_first_checkpoint(containers):
        deadline = time.time() + 60
        while not store.steps() and time.time() < deadline:
            time.sleep(0.05)
        containers[0].stop(timeout=30)

    hyperparameters = {"network": "mlp", "epochs": 500, "log_interval": 0}
    first = harness.train(
        image, hyperparameters, channels, checkpoint_dir=checkpoints, on_started=stop_after_first_checkpoint
    )
    assert first.master.exit_code != 0 and "stopped by SIGTERM" in first.master.failure
    epoch = store.latest().meta["epoch"]
    assert 1 <= epoch < 500
    second = harness.train(image, {**hyperparameters, "epochs": epoch + 1}, channels, checkpoint_dir=checkpoints)
    assert second.ok, second.logs()
    assert f"resuming from checkpoint at epoch {epoch}" in second.master.logs
    assert _metrics(second)["epochs"] == epoch + 1
