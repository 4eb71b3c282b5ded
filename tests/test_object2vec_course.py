"""The Object2Vec course, end to end, in SageMaker SDK local mode with our mxnet-mf image.

The course's steps, unchanged but for the image URI:
1. MovieLens ML-100K files (`ua.base`, `ua.test`, `u.item`) -> JSON Lines as the course writes them
   (`{"in0": [user], "in1": [movie], "label": rating}`, shuffled; the recommendation set binarized at > 3),
   channels `train` and `validation`, ContentType application/jsonlines;
2. the course's two Object2Vec hyperparameter dicts, unchanged (the SDK passes them to the container as
   strings): a regressor ("ratingModel") and a classifier ("recommendationModel"), each deployed;
3. the course's rec-engine Lambda function (`mxnet_mf.lambda_function.lambda_handler`) with the course's test
   events and the course README's variable names (ENDPOINT_NANE_RATING / ENDPOINT_NANE_REC);
4. the course's movie-retrieval Lambda function (`mxnet_mf.lambda_function_movie_retrieval.lambda_handler`)
   against S3 served by moto (server mode) holding ua.base and u.item.
The Lambda functions call AWS only through boto3 clients; here AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME points at
local/runtime_proxy.py (InvokeEndpoint -> the local-mode endpoints) and AWS_ENDPOINT_URL_S3 at moto.

MovieLens may not be redistributed, so the files are generated with a planted structure whose answers are
known: ratings = mean + user bias + movie bias + <user factors, movie factors> + noise, in ML-100K's id
ranges; user 789 (the course's test event) has a planted expected rating of 4.5 for movie 286 and 1.5 for
another movie; movie 2 (the course's retrieval event) has a twin, a movie with the same factors and bias that
every user rates exactly as they rate movie 2.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.images import build_image

pytestmark = pytest.mark.docker

# The course notebook's two hyperparameter dicts, exactly as it sets them (Lab 2, object2vec_movie_recommendation).
HYPERPARAMETERS_RATING = {
    "_kvstore": "device",
    "_num_gpus": "auto",
    "_num_kv_servers": "auto",
    "bucket_width": 0,
    "early_stopping_patience": 3,
    "early_stopping_tolerance": 0.01,
    "enc0_cnn_filter_width": 3,
    "enc0_layers": "auto",
    "enc0_max_seq_len": 1,
    "enc0_network": "pooled_embedding",
    "enc0_token_embedding_dim": 300,
    "enc0_vocab_size": 944,
    "enc1_layers": "auto",
    "enc1_max_seq_len": 1,
    "enc1_network": "pooled_embedding",
    "enc1_token_embedding_dim": 300,
    "enc1_vocab_size": 1684,
    "enc_dim": 1024,
    "epochs": 20,
    "learning_rate": 0.001,
    "mini_batch_size": 64,
    "mlp_activation": "tanh",
    "mlp_dim": 256,
    "mlp_layers": 1,
    "num_classes": 2,
    "optimizer": "adam",
    "output_layer": "mean_squared_error",
}
HYPERPARAMETERS_REC = {
    "_kvstore": "device",
    "_num_gpus": "auto",
    "_num_kv_servers": "auto",
    "bucket_width": 0,
    "early_stopping_patience": 3,
    "early_stopping_tolerance": 0.01,
    "enc0_cnn_filter_width": 3,
    "enc0_layers": "auto",
    "enc0_max_seq_len": 1,
    "enc0_network": "pooled_embedding",
    "enc0_token_embedding_dim": 300,
    "enc0_vocab_size": 944,
    "enc1_cnn_filter_width": 3,
    "enc1_layers": "auto",
    "enc1_max_seq_len": 1,
    "enc1_network": "pooled_embedding",
    "enc1_token_embedding_dim": 300,
    "enc1_vocab_size": 1684,
    "enc_dim": 2048,
    "epochs": 20,
    "learning_rate": 0.001,
    "mini_batch_size": 2048,
    "mlp_activation": "relu",
    "mlp_dim": 1024,
    "mlp_layers": 1,
    "num_classes": 2,
    "optimizer": "adam",
    "output_layer": "softmax",
}
# The course's Lambda test events (its README), and the S3 layout its movie-retrieval function reads.
COURSE_DATA = '{ "instances": [{"in0": [789], "in1": [286]}]}'
RATING_EVENT = {"data": COURSE_DATA, "type": "rating"}
RECOMMENDATION_EVENT = {"data": COURSE_DATA, "type": "recommendation"}
S3_DIR = "object2vec/movielens/ml-100k"

USER, LIKED, MOVIE = 789, 286, 2  # the ids of the course's events
LIKED_RATING, DISLIKED_RATING = 4.5, 1.5  # user 789's planted expected ratings (as near as the draw allows)


# ---------------------------------------------------------------------- MovieLens-format data, planted
@dataclass(frozen=True)
class Planted:
    root: Path  # ml-100k/{ua.base, ua.test, u.item}
    liked_rating: float  # user 789's expected rating of movie 286 (about 4.5)
    disliked: int  # a movie user 789 is expected to rate about 1.5
    disliked_rating: float
    twin: int  # movie 2's twin
    titles: dict[int, str]
    train: list[tuple[int, int, float]]
    validation: list[tuple[int, int, float]]

    @property
    def movies_in_train(self) -> list[int]:
        return sorted({movie for _, movie, _ in self.train})


def make_movielens(root: Path, users: int = 200, movies: int = 300, seed: int = 14) -> Planted:
    """ML-100K-format files (ids within 1..943 and 1..1682) with the planted answers described above."""
    rng = np.random.default_rng(seed)
    rank, density, noise = 4, 0.35, 0.35
    user_factors = rng.normal(0, 0.8, (users, rank))
    movie_factors = rng.normal(0, 1.0, (movies, rank))
    movie_factors /= np.linalg.norm(movie_factors, axis=1, keepdims=True)
    user_bias, movie_bias = rng.normal(0, 0.3, users), rng.normal(0, 0.4, movies)
    movie_factors[1], movie_bias[1] = movie_factors[0], movie_bias[0]  # slots 0 and 1: movie 2 and its twin
    # Slot 0 of the users is user 789: a typical user, whose ratings are rarely clipped at 1 or 5.
    user_factors[0] *= 1.4 / np.linalg.norm(user_factors[0])
    user_bias[0] = 0.0
    truth = 3.55 + user_bias[:, None] + movie_bias[None, :] + 1.2 * user_factors @ movie_factors.T
    # Among the other movies, the one user 789 should rate nearest 4.5 becomes 286.
    free = np.arange(2, movies)
    liked_slot = free[np.argmin(np.abs(truth[0, free] - LIKED_RATING))]
    disliked_slot = free[np.argmin(np.abs(truth[0, free] - DISLIKED_RATING))]
    user_ids = [USER, *rng.choice(np.setdiff1d(np.arange(1, 944), [USER]), users - 1, replace=False).tolist()]
    pool = np.setdiff1d(np.arange(1, 1683), [MOVIE, LIKED])
    others = iter(rng.choice(pool, movies - 2, replace=False).tolist())
    movie_ids = [MOVIE if s == 0 else LIKED if s == liked_slot else next(others) for s in range(movies)]
    twin, disliked = movie_ids[1], movie_ids[disliked_slot]

    ratings = np.clip(np.rint(truth + rng.normal(0, noise, truth.shape)), 1, 5)
    ratings[:, 1] = ratings[:, 0]  # every user rates the twin exactly as movie 2
    rated = rng.random(truth.shape) < density
    rated[:, :2] = True
    train, validation = [], []
    for u in range(users):
        # As ua.test does, 10 ratings of each user are held out (never the twins', so they stay alike); user
        # 789's two planted ratings are among them.
        planted = [liked_slot, disliked_slot] if u == 0 else []
        seen = [s for s in np.flatnonzero(rated[u]).tolist() if s not in planted]
        candidates = [s for s in seen if s > 1]
        rng.shuffle(candidates)
        held = set(candidates[: 10 - len(planted)] + planted)
        for s in seen + planted:
            row = (user_ids[u], movie_ids[s], float(ratings[u, s]))
            (validation if s in held else train).append(row)
    # Every held-out movie is also rated in training (unknown ids are another test's business).
    trained = {m for _, m, _ in train}
    train += [row for row in validation if row[1] not in trained]
    validation = [row for row in validation if row[1] in trained]
    root.mkdir(parents=True, exist_ok=True)
    stamps = iter(rng.integers(874_724_710, 893_286_638, len(train) + len(validation)).tolist())
    for name, rows in (("ua.base", train), ("ua.test", validation)):
        lines = [f"{u}\t{m}\t{r:g}\t{next(stamps)}\n" for u, m, r in sorted(rows)]
        (root / name).write_text("".join(lines))
    titles = {m: f"Movie {m} ({1950 + m % 48})" for m in movie_ids}
    titles[MOVIE], titles[twin] = "GoldenEye (1995)", "Caf\u00e9 Twin (1995)"  # a latin-1 title: u.item is latin-1
    genres = "|".join("0" * 19)
    items = "".join(f"{m}|{titles[m]}|01-Jan-1995||http://example.invalid/{m}|{genres}\n" for m in sorted(movie_ids))
    (root / "u.item").write_bytes(items.encode("latin-1"))
    expected = truth[0, liked_slot], truth[0, disliked_slot]
    return Planted(root, float(expected[0]), disliked, float(expected[1]), twin, titles, train, validation)


def write_course_jsonl(planted: Planted, target: Path) -> dict[str, dict[str, Path]]:
    """The course's JSON Lines: shuffled; *_r.jsonl the ratings, *_c.jsonl binarized at > 3 (1 or 0)."""
    shuffle = random.Random(0).shuffle
    channels: dict[str, dict[str, Path]] = {"rating": {}, "recommendation": {}}
    for channel, rows in (("train", list(planted.train)), ("validation", list(planted.validation))):
        shuffle(rows)
        for task, suffix, label in (
            ("rating", "r", lambda r: r),
            ("recommendation", "c", lambda r: 1 if r > 3 else 0),
        ):
            directory = target / task / channel
            directory.mkdir(parents=True, exist_ok=True)
            lines = [json.dumps({"in0": [u], "in1": [m], "label": label(r)}) + "\n" for u, m, r in rows]
            (directory / f"{channel}_{suffix}.jsonl").write_text("".join(lines))
            channels[task][channel] = directory
    return channels


# ---------------------------------------------------------------------- the course, in local mode
@dataclass
class Course:
    planted: Planted
    rating_endpoint: str
    rec_endpoint: str
    proxy: object
    monkeypatch: pytest.MonkeyPatch


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    from local.runtime_proxy import RuntimeProxy
    from local.sdk import local_run

    image = build_image("mxnet-mf")
    work = tmp_path_factory.mktemp("object2vec-course")
    planted = make_movielens(work / "ml-100k")
    channels = write_course_jsonl(planted, work / "jsonl")
    with contextlib.ExitStack() as stack, pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in {
            "AWS_DEFAULT_REGION": "us-west-2",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "ENDPOINT_NAME", "ENDPOINT_NAME_RATING", "ENDPOINT_NAME_REC"):
            monkeypatch.delenv(name, raising=False)
        proxy = stack.enter_context(RuntimeProxy())
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", proxy.url)
        names = {}
        for task, hyperparameters in (("rating", HYPERPARAMETERS_RATING), ("recommendation", HYPERPARAMETERS_REC)):
            run = stack.enter_context(local_run(image))
            inputs = {channel: (path, "application/jsonlines") for channel, path in channels[task].items()}
            run.fit(inputs, hyperparameters)
            predictor = run.deploy()
            port = run.session.config["local"]["serving_port"]
            proxy.add(predictor.endpoint_name, f"http://127.0.0.1:{port}")
            names[task] = predictor.endpoint_name
        yield Course(planted, names["rating"], names["recommendation"], proxy, monkeypatch)


def invoke(endpoint: str, body: str) -> dict:
    """InvokeEndpoint through boto3, as any client of the endpoints would."""
    import boto3

    response = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Accept="application/json", Body=body
    )
    return json.loads(response["Body"].read())


def pairs_body(rows) -> str:
    return json.dumps({"instances": [{"in0": [u], "in1": [m]} for u, m, _ in rows]})


def test_the_regressor_learns_the_ratings(course):
    validation = course.planted.validation
    answer = invoke(course.rating_endpoint, pairs_body(validation))
    predicted = np.array([p["scores"][0] for p in answer["predictions"]])
    assert all(len(p["scores"]) == 1 for p in answer["predictions"])
    labels = np.array([r for _, _, r in validation])
    baseline = np.sqrt(np.mean((labels - np.mean([r for _, _, r in course.planted.train])) ** 2))
    rmse = float(np.sqrt(np.mean((predicted - labels) ** 2)))
    assert rmse <= 0.8 * baseline, (rmse, baseline)


def test_the_classifier_answers_probabilities_and_learns_the_binarized_ratings(course):
    validation = course.planted.validation
    predictions = invoke(course.rec_endpoint, pairs_body(validation))["predictions"]
    for p in predictions:
        assert len(p["scores"]) == 2 and sum(p["scores"]) == pytest.approx(1, abs=1e-5)
        assert min(p["scores"]) >= 0 and p["predicted_label"] == int(np.argmax(p["scores"]))
    labels = np.array([int(r > 3) for _, _, r in validation])
    accuracy = float(np.mean(np.array([p["scores"][1] > 0.5 for p in predictions]) == labels))
    majority = max(labels.mean(), 1 - labels.mean())
    assert accuracy >= majority + 0.1, (accuracy, majority)


def test_the_rec_engine_lambda_with_the_courses_events(course):
    from mxnet_mf.lambda_function import lambda_handler

    course.monkeypatch.setenv("ENDPOINT_NANE_RATING", course.rating_endpoint)  # the course README's spelling
    course.monkeypatch.setenv("ENDPOINT_NANE_REC", course.rec_endpoint)
    sentence = lambda_handler(RATING_EVENT, None)
    prefix = "The User will likely rate this movie to "
    assert sentence.startswith(prefix), sentence
    (rating,) = json.loads(sentence[len(prefix) :])
    assert abs(rating - course.planted.liked_rating) <= 0.6, (sentence, course.planted.liked_rating)
    assert lambda_handler(RECOMMENDATION_EVENT, None) == "We recommend the user this movie."
    disliked = json.dumps({"instances": [{"in0": [USER], "in1": [course.planted.disliked]}]})
    assert lambda_handler({"data": disliked, "type": "recommendation"}, None) == (
        "We DO NOT recommend the user this movie."
    )
    (low,) = json.loads(lambda_handler({"data": disliked, "type": "rating"}, None)[len(prefix) :])
    assert abs(low - course.planted.disliked_rating) <= 0.75 and low < rating - 2, (low, course.planted.disliked_rating)
    sent = [r for r in course.proxy.requests if r.body == COURSE_DATA.encode()]
    assert [r.endpoint_name for r in sent] == [course.rating_endpoint, course.rec_endpoint]


@pytest.fixture
def s3_bucket(course):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        course.monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://{host}:{port}")
        bucket = f"course-{uuid.uuid4().hex[:12]}"
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        for name in ("ua.base", "u.item"):  # the course's `aws s3api put-object` step
            s3.put_object(Bucket=bucket, Key=f"{S3_DIR}/{name}", Body=(course.planted.root / name).read_bytes())
        yield bucket
    finally:
        server.stop()


def test_movie_retrieval_lambda_finds_the_planted_twin(course, s3_bucket, capsys):
    from mxnet_mf.lambda_function_movie_retrieval import lambda_handler

    course.monkeypatch.setenv("ENDPOINT_NAME", course.rec_endpoint)
    result = lambda_handler({"bucket_name": s3_bucket, "movie_id_to_examine": MOVIE}, None)
    planted = course.planted
    assert result["statusCode"] == 200
    assert (result["movie_id"], result["title"]) == (MOVIE, "GoldenEye (1995)")
    assert (result["nearest_movie_id"], result["nearest_title"]) == (planted.twin, "Caf\u00e9 Twin (1995)"), result[
        "nearest"
    ]
    assert math.isfinite(result["distance"]) and result["distance"] >= 0
    assert result["candidates"] == len(planted.movies_in_train) - 1
    assert result["distance"] < result["nearest"][1]["distance"]
    output = capsys.readouterr().out
    assert "in the embedding space is Caf\u00e9 Twin (1995)" in output
    # The embedding requests (in1 only) asked for every movie of ua.base in one body, as the course's function does
    # (the 300 token embeddings of the binary model's core fit in one answer; tests/test_mf_lambda.py shows the
    # function halving its request on the endpoint's 413).
    bodies = [json.loads(r.body)["instances"] for r in course.proxy.requests if r.endpoint_name == course.rec_endpoint]
    bodies = [[i["in1"][0] for i in body] for body in bodies if all(set(x) == {"in1"} for x in body)]
    assert [sorted(body) for body in bodies] == [planted.movies_in_train]
    assert "too large" not in output
