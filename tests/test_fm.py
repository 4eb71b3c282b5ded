"""The FM image in docker (local/harness): the MNIST "is it a 0" job on dense recordIO-protobuf, the sparse
MovieLens-format regressor in Pipe mode, every request form at the endpoint, failures and 4xx errors, and
fm-client's evaluation and Lambda handler against the running container."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import scipy.sparse

from byoc_runtime.codecs import recordio_protobuf
from fm_client import evaluate, handler, mnist, movielens
from local.opt_ml import ChannelSpec
from tests.images import build_image

pytestmark = pytest.mark.docker
RECORDIO = "application/x-recordio-protobuf"
MNIST_HP = mnist.SAMPLE_HYPERPARAMETERS


@pytest.fixture(scope="module")
def image():
    return build_image("fm")


@pytest.fixture(scope="module")
def mnist_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("fm-mnist")
    x, y = mnist.load_binary(mnist.SAMPLE_DIR, "train")
    tx, ty = mnist.load_binary(mnist.SAMPLE_DIR, "test")
    (d / "train.rec").write_bytes(recordio_protobuf.write_dense(x, y))
    (d / "test.rec").write_bytes(recordio_protobuf.write_dense(tx, ty))
    return d, tx, ty


@pytest.fixture(scope="module")
def trained(harness, image, mnist_data):
    d, _, _ = mnist_data
    channels = {"train": ChannelSpec(d / "train.rec", RECORDIO), "test": ChannelSpec(d / "test.rec", RECORDIO)}
    result = harness.train(image, MNIST_HP, channels)
    assert result.ok, result.logs()
    return result


@pytest.fixture(scope="module")
def endpoint(harness, image, trained):
    with harness.serve(image, trained.model_archive) as endpoint:
        yield endpoint


def test_mnist_is_it_a_zero_beats_the_all_zeros_baseline(trained, mnist_data):
    _, _, ty = mnist_data
    metrics = json.loads((trained.output_data_dir / "metrics.json").read_text())
    baseline = 1 - ty.mean()  # always answering "not a 0"
    assert metrics["test:binary_classification_accuracy"] > baseline + 0.05
    assert metrics["test:binary_f_1.000"] > 0.85
    logs = trained.master.logs
    assert "#test_score (algo-1) : ('binary_classification_accuracy'," in logs
    assert "#quality_metric: host=algo-1, test binary_f_1.000 <score>=" in logs
    # the built-in's archive (MXNet params + symbol) beside our npz
    assert {"fm_model.npz", "model_algo-1"} <= {p.name for p in trained.model_dir.iterdir()}


def _dense_json(rows):
    return json.dumps({"instances": [{"features": r} for r in np.asarray(rows).tolist()]})


def _sparse_json(rows):
    instances = []
    for r in np.asarray(rows):
        keys = np.flatnonzero(r)
        features = {"keys": keys.tolist(), "shape": [r.size], "values": r[keys].tolist()}
        instances.append({"data": {"features": features}})
    return json.dumps({"instances": instances})


def _csv(rows):
    buffer = io.StringIO()
    np.savetxt(buffer, rows, delimiter=",", fmt="%.6g")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "encode, content_type",
    [
        (_dense_json, "application/json"),
        (_sparse_json, "application/json"),
        (_csv, "text/csv"),
        (lambda rows: recordio_protobuf.write_dense(rows.astype(np.float32)), RECORDIO),
        (lambda rows: recordio_protobuf.write_sparse(scipy.sparse.csr_matrix(rows)), RECORDIO),
    ],
    ids=["json-dense", "json-sparse", "csv", "recordio-dense", "recordio-sparse"],
)
def test_every_request_form_gives_the_same_predictions(endpoint, mnist_data, encode, content_type):
    _, tx, _ = mnist_data
    rows = tx[:20]
    response = endpoint.invoke(encode(rows), content_type)
    assert response.status_code == 200, response.text
    reference = endpoint.invoke(_dense_json(rows)).json()["predictions"]
    predictions = response.json()["predictions"]
    assert [p["predicted_label"] for p in predictions] == [p["predicted_label"] for p in reference]
    assert np.allclose([p["score"] for p in predictions], [p["score"] for p in reference], atol=1e-4)
    assert set(predictions[0]) == {"score", "predicted_label"}


def test_recordio_and_jsonlines_responses(endpoint, mnist_data):
    _, tx, _ = mnist_data
    rec = endpoint.invoke(_csv(tx[:3]), "text/csv", accept=RECORDIO)
    assert rec.headers["Content-Type"].startswith(RECORDIO)
    records = list(recordio_protobuf.read_records(rec.content))
    assert len(records) == 3 and set(records[0].label) == {"score", "predicted_label"}
    lines = endpoint.invoke(_csv(tx[:3]), "text/csv", accept="application/jsonlines").text.splitlines()
    assert len(lines) == 3 and set(json.loads(lines[0])) == {"score", "predicted_label"}


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        ('{"instances": [{"features": [1, 2, 3]}]}', "application/json", 400),
        (
            '{"instances": [{"data": {"features": {"keys": [900], "shape": [784], "values": [1]}}}]}',
            "application/json",
            400,
        ),
        ('{"instances": [{"data": {"features": "x"}}]}', "application/json", 400),
        ("{oops", "application/json", 400),
        (b"\xde\xad\xbe\xef" * 4, RECORDIO, 400),
        ("1,2\n", "text/csv", 400),
        ("x", "image/png", 415),
    ],
)
def test_bad_requests_are_4xx_json(endpoint, body, content_type, status):
    response = endpoint.invoke(body, content_type)
    assert response.status_code == status
    assert set(response.json()) == {"error", "error_type"} and "Traceback" not in response.text


def test_fm_client_evaluation_and_lambda_handler_against_the_container(endpoint, mnist_data):
    _, tx, ty = mnist_data

    def predict(request):
        return endpoint.invoke(json.dumps(request)).json()

    report = evaluate.evaluate_endpoint(predict, tx[:400], ty[:400], batch_size=100)
    assert report["examples"] == 400 and report["accuracy"] > report["baseline_accuracy"]
    assert report["true_positives"] + report["false_negatives"] == int(ty[:400].sum())

    class Runtime:  # the sagemaker-runtime client's invoke_endpoint, answered by the real container
        def invoke_endpoint(self, EndpointName, ContentType, Accept, Body):  # noqa: N803 - boto3's names
            answer = endpoint.invoke(Body, ContentType, accept=Accept)
            return {"Body": io.BytesIO(answer.content)}

    event = {"body": json.dumps({"data": tx[:2].tolist()})}
    answer = handler.lambda_handler(event, None, runtime=Runtime(), endpoint_name="fm")
    assert answer["statusCode"] == 200
    assert len(json.loads(answer["body"])["predictions"]) == 2
    bad = handler.lambda_handler({"body": "{}"}, None, runtime=Runtime(), endpoint_name="fm")
    assert bad["statusCode"] == 400


def test_sparse_movielens_regressor_in_pipe_mode(harness, image, tmp_path, dump_logs_on_failure):
    ratings = movielens.synthetic(users=300, items=200, count=20000, seed=0)
    path = movielens.write_u_data(ratings, tmp_path / "u.data")
    train, test = movielens.split(movielens.read_ratings(path), 0.1)
    encoding = movielens.OneHotEncoding.fit(train)
    for name, part in (("train", train), ("test", test)):
        features = encoding.transform(part.users, part.items)
        (tmp_path / f"{name}.rec").write_bytes(recordio_protobuf.write_sparse(features, movielens.labels_of(part)))
    hp = {
        "feature_dim": encoding.feature_dim,
        "num_factors": 16,
        "predictor_type": "regressor",
        "epochs": 25,
        "mini_batch_size": 500,
        "bias_lr": 0.05,
        "linear_lr": 0.02,
        "factors_lr": 0.02,
        "factors_init_sigma": 0.1,
        "linear_wd": 0.0,
        "factors_wd": 0.0,
    }
    channels = {
        "train": ChannelSpec(tmp_path / "train.rec", RECORDIO, input_mode="Pipe", pipe_epochs=25),  # a FIFO per epoch
        "test": ChannelSpec(tmp_path / "test.rec", RECORDIO),
    }
    result = harness.train(image, hp, channels)
    dump_logs_on_failure(result)
    assert result.ok, result.logs()
    metrics = json.loads((result.output_data_dir / "metrics.json").read_text())
    baseline = float(np.sqrt(np.mean((test.ratings - train.ratings.mean()) ** 2)))
    assert metrics["test:rmse"] < 0.8 * baseline, (metrics["test:rmse"], baseline)
    assert "#metric: test:rmse=" in result.master.logs


def test_bad_hyperparameter_writes_the_failure_file(harness, image, mnist_data, dump_logs_on_failure):
    d, _, _ = mnist_data
    result = harness.train(image, {**MNIST_HP, "num_factors": -3}, {"train": ChannelSpec(d / "test.rec", RECORDIO)})
    dump_logs_on_failure(result)
    assert result.master.exit_code != 0
    assert result.master.failure.splitlines()[0].startswith("Hyperparameter 'num_factors' is invalid")


def test_two_hosts_train_in_sync_through_dist_sync(harness, image, mnist_data, dump_logs_on_failure):
    """Each host trains on half the rows; gradients are summed through the kvstore, so both end with the same
    parameters: the same test metrics on both, and only the master (hosts[0]) writes the model."""
    d, _, _ = mnist_data
    channels = {"train": ChannelSpec(d / "train.rec", RECORDIO), "test": ChannelSpec(d / "test.rec", RECORDIO)}
    result = harness.train(image, {**MNIST_HP, "epochs": 3}, channels, instance_count=2, timeout=180)
    dump_logs_on_failure(result)
    assert result.ok, result.logs()
    assert all("started ps-lite server" in host.logs for host in result.hosts)
    assert "3000 records read from channel 'train', 1500 trained on this host" in result.master.logs
    metrics = [json.loads((h.tree.root / "output" / "data" / "metrics.json").read_text()) for h in result.hosts]
    assert (
        metrics[0]["test:binary_classification_cross_entropy"] == metrics[1]["test:binary_classification_cross_entropy"]
    )
    assert metrics[0]["test:binary_classification_accuracy"] > 0.95
    assert (result.model_dir / "fm_model.npz").exists()
    assert not (result.hosts[1].tree.root / "model" / "fm_model.npz").exists()
