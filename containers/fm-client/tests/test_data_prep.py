"""MNIST IDX and MovieLens readers, one-hot encoding, evaluation reports, the Lambda handler, the CLI."""

import gzip
import io
import json
import struct

import numpy as np
import pytest

from fm_client import cli, evaluate, handler, mnist, movielens


def test_mnist_sample_is_the_course_task():
    x, y = mnist.load_binary(mnist.SAMPLE_DIR, "train")
    assert x.shape == (3000, 784) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() == 1.0
    assert set(np.unique(y)) == {0.0, 1.0} and 0.05 < y.mean() < 0.15


def test_read_idx_checks_the_header(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(struct.pack(">IIII", 0x803, 2, 2, 2) + bytes(7)))
    with pytest.raises(ValueError, match="header says"):
        mnist.read_idx(path)


@pytest.mark.parametrize(
    "text",
    [
        "1\t10\t5\t881250949\n2\t10\t3\t881250950\n",
        "1::10::5::881250949\n2::10::3::881250950\n",
        "userId,movieId,rating,timestamp\n1,10,5.0,881250949\n2,10,3.0,881250950\n",
    ],
)
def test_movielens_formats(tmp_path, text):
    path = tmp_path / "ratings"
    path.write_text(text)
    ratings = movielens.read_ratings(path)
    assert ratings.users.tolist() == [1, 2] and ratings.items.tolist() == [10, 10]
    assert ratings.ratings.tolist() == [5.0, 3.0]


def test_one_hot_user_plus_item():
    ratings = movielens.synthetic(users=5, items=4, count=20, seed=0)
    encoding = movielens.OneHotEncoding.fit(ratings)
    assert encoding.feature_dim == 9
    csr = encoding.transform(np.array([ratings.users[0], 999]), np.array([ratings.items[0], ratings.items[0]]))
    assert np.diff(csr.indptr).tolist() == [2, 1]  # an unknown user keeps only its item column
    assert csr.indices[0] < 5 <= csr.indices[1] and np.all(csr.values == 1)
    assert movielens.OneHotEncoding.from_json(encoding.to_json()).feature_dim == 9


def test_synthetic_ratings_round_trip_u_data(tmp_path):
    ratings = movielens.synthetic(count=100)
    back = movielens.read_ratings(movielens.write_u_data(ratings, tmp_path / "u.data"))
    assert np.array_equal(back.users, ratings.users) and np.array_equal(back.ratings, ratings.ratings)
    assert set(np.unique(ratings.ratings)) <= {1, 2, 3, 4, 5}


def test_classification_report_matches_hand_counts():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    predicted = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    report = evaluate.classification_report(labels, predicted)
    assert (report["true_positives"], report["false_positives"], report["false_negatives"]) == (2, 1, 1)
    assert report["precision"] == pytest.approx(2 / 3) and report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(2 / 3) and report["accuracy"] == pytest.approx(6 / 8)
    assert report["baseline_accuracy"] == pytest.approx(5 / 8)
    table = evaluate.format_table(report, {"true_positives": 951})
    assert "| true_positives | 2 | 951 |" in table


def test_regression_report():
    report = evaluate.regression_report(np.array([1.0, 3.0]), np.array([2.0, 3.0]), train_mean=2.0)
    assert report["rmse"] == pytest.approx(np.sqrt(0.5)) and report["baseline_rmse"] == pytest.approx(1.0)


def test_predict_batched_sends_the_builtin_sparse_json():
    import scipy.sparse

    x = scipy.sparse.csr_matrix(np.array([[0, 2.0, 0], [1.0, 0, 0], [0, 0, 3.0]]))
    sent = []

    def predict(request):
        sent.append(request)
        return {"predictions": [{"score": 1.0} for _ in request["instances"]]}

    assert len(evaluate.predict_batched(predict, x, batch_size=2)) == 3
    assert [len(r["instances"]) for r in sent] == [2, 1]
    assert sent[0]["instances"][0] == {"data": {"features": {"keys": [1], "shape": [3], "values": [2.0]}}}


class FakeRuntime:
    def __init__(self, answer=None, error=None):
        self.answer, self.error, self.calls = answer, error, []

    def invoke_endpoint(self, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        return {"Body": io.BytesIO(json.dumps(self.answer).encode())}


def test_lambda_handler_shapes():
    runtime = FakeRuntime({"predictions": [{"score": 0.9, "predicted_label": 1.0}]})
    answer = handler.lambda_handler({"features": [0.0, 1.0]}, None, runtime=runtime, endpoint_name="ep")
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["predictions"][0]["predicted_label"] == 1.0
    assert json.loads(runtime.calls[0]["Body"]) == {"instances": [{"features": [0.0, 1.0]}]}
    assert runtime.calls[0]["ContentType"] == "application/json" and runtime.calls[0]["EndpointName"] == "ep"
    assert handler.lambda_handler({"body": "not json"}, None, runtime=runtime, endpoint_name="ep")["statusCode"] == 400
    failing = FakeRuntime(error=RuntimeError("boom"))
    assert handler.lambda_handler({"features": [1]}, None, runtime=failing, endpoint_name="ep")["statusCode"] == 502


def test_cli_prepares_mnist_and_movielens(tmp_path, capsys):
    out = tmp_path / "mnist"
    argv = ["mnist", "--data-dir", str(mnist.SAMPLE_DIR), "--output", str(out), "--train-limit", "100"]
    assert cli.main(argv + ["--test-limit", "50"]) == 0
    assert (out / "train" / "part-00000.rec").stat().st_size > 0
    ratings = movielens.write_u_data(movielens.synthetic(count=500), tmp_path / "u.data")
    assert cli.main(["movielens", "--ratings", str(ratings), "--output", str(tmp_path / "ml"), "--shards", "2"]) == 0
    assert len(list((tmp_path / "ml" / "train").glob("*.rec"))) == 2
    assert "feature_dim=" in capsys.readouterr().out
