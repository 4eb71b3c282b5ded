"""The Lambda functions, through their real boto3 code paths.

Endpoints: a local InvokeEndpoint stand-in (local/runtime_proxy.py, reached through
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME) in front of the real mxnet-mf serving app (a Flask app in this process)
or small Flask stand-ins for an Object2Vec classifier and embedding endpoint. S3: moto in server mode, reached
through AWS_ENDPOINT_URL_S3. Nothing is mocked inside the handlers."""

from __future__ import annotations

import json
import uuid

import boto3
import botocore.exceptions
import pytest
from flask import Flask, request

from byoc_runtime.app import create_app
from byoc_runtime.serving_settings import ServingSettings
from local.runtime_proxy import RuntimeProxy
from mxnet_mf import lambda_function, lambda_function_movie_retrieval
from mxnet_mf.lambda_function import (
    ConfigurationError,
    EndpointError,
    EventError,
    make_handler,
    sagemaker_runtime_invoker,
)
from mxnet_mf.lambda_function_movie_retrieval import DataError

COURSE_DATA = '{ "instances": [{"in0": [10], "in1": [300]}]}'  # the course's test event's shape, ids of the fixture
ENDPOINT_VARIABLES = (
    "ENDPOINT_NAME",
    "ENDPOINT_NAME_RATING",
    "ENDPOINT_NANE_RATING",
    "ENDPOINT_NAME_REC",
    "ENDPOINT_NANE_REC",
)


@pytest.fixture
def aws(monkeypatch):
    """Dummy credentials and a region, no profile, no endpoint names set."""
    for variable in (*ENDPOINT_VARIABLES, "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


@pytest.fixture
def mf_app(mf_model_dir):
    """The real mxnet-mf serving app on the fixture model (ratings 10/300 -> 4.9, 20/200 -> 3.9)."""
    settings = ServingSettings(model_dir=mf_model_dir, family="mxnet_mf.serving", workers=1)
    return create_app(settings, background_load=False)


def classifier_app(p1: dict[tuple[int, int], float]) -> Flask:
    """An Object2Vec classifier's answers: {"scores": [p0, p1], "predicted_label": k} per (in0, in1)."""
    app = Flask("classifier")

    @app.post("/invocations")
    def invocations():
        answers = []
        for instance in request.get_json()["instances"]:
            p = p1[(instance["in0"][0], instance["in1"][0])]
            answers.append({"scores": [1 - p, p], "predicted_label": int(p > 0.5)})
        return {"predictions": answers}

    return app


@pytest.fixture
def proxy(aws, mf_app):
    with RuntimeProxy(
        {"ratingModel": mf_app, "recommendationModel": classifier_app({(10, 300): 0.8, (20, 200): 0.3})}
    ) as proxy:
        aws.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", proxy.url)
        yield proxy


def answer(response):
    return response["statusCode"], json.loads(response["body"])


def rating_in(sentence: str) -> list[float]:
    prefix = "The User will likely rate this movie to "
    assert sentence.startswith(prefix), sentence
    return json.loads(sentence[len(prefix) :])


# ---------------------------------------------------------------------- the course's rec-engine events
def test_course_rating_event_sends_data_unchanged_and_answers_the_courses_sentence(proxy, aws):
    aws.setenv("ENDPOINT_NAME_RATING", "ratingModel")
    sentence = lambda_function.lambda_handler({"data": COURSE_DATA, "type": "rating"}, None)
    assert rating_in(sentence) == pytest.approx([4.9])
    sent = proxy.requests[-1]
    assert sent.endpoint_name == "ratingModel" and sent.body == COURSE_DATA.encode()
    assert sent.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("kind", ["recommendation", "rec", "anything but rating"])
def test_course_recommendation_events_go_to_the_classifier(proxy, aws, kind):
    aws.setenv("ENDPOINT_NAME_REC", "recommendationModel")
    data = '{"instances": [{"in0": [10], "in1": [300]}]}'
    assert lambda_function.lambda_handler({"data": data, "type": kind}, None) == "We recommend the user this movie."
    data = '{"instances": [{"in0": [20], "in1": [200]}]}'
    assert lambda_function.lambda_handler({"data": data, "type": kind}, None) == (
        "We DO NOT recommend the user this movie."
    )
    assert {r.endpoint_name for r in proxy.requests} == {"recommendationModel"}


def test_the_data_string_is_forwarded_byte_for_byte(proxy, aws):
    aws.setenv("ENDPOINT_NAME_RATING", "ratingModel")
    data = '  {"instances":[ {"in1": [300],\n "in0": [10], "note": "caf\u00e9 \u2013 \\u00e9"} ] }\t\n'
    lambda_function.lambda_handler({"data": data, "type": "rating"}, None)
    assert proxy.requests[-1].body == data.encode("utf-8")


@pytest.mark.parametrize(
    "variables",
    [
        {"ENDPOINT_NANE_RATING": "ratingModel", "ENDPOINT_NANE_REC": "recommendationModel"},  # the course README
        {"ENDPOINT_NAME_RATING": "ratingModel", "ENDPOINT_NAME_REC": "recommendationModel"},
        {  # both spellings: the correct one wins
            "ENDPOINT_NAME_RATING": "ratingModel",
            "ENDPOINT_NANE_RATING": "no-such-endpoint",
            "ENDPOINT_NAME_REC": "recommendationModel",
            "ENDPOINT_NANE_REC": "no-such-endpoint",
        },
    ],
)
def test_endpoint_variables_and_the_courses_misspellings(proxy, aws, variables):
    for name, value in variables.items():
        aws.setenv(name, value)
    assert rating_in(lambda_function.lambda_handler({"data": COURSE_DATA, "type": "rating"}, None))
    assert lambda_function.lambda_handler({"data": COURSE_DATA, "type": "recommendation"}, None).startswith("We ")
    assert [r.endpoint_name for r in proxy.requests] == ["ratingModel", "recommendationModel"]


def test_no_endpoint_variable_names_both_spellings(proxy):
    with pytest.raises(ConfigurationError, match=r"\$ENDPOINT_NAME_REC \(or \$ENDPOINT_NANE_REC"):
        lambda_function.lambda_handler({"data": COURSE_DATA, "type": "recommendation"}, None)
    assert not proxy.requests


def test_several_instances_and_the_json_format(proxy, aws, mf_app):
    aws.setenv("ENDPOINT_NAME_RATING", "ratingModel")
    data = '{"instances": [{"in0": [10], "in1": [300]}, {"in0": [20], "in1": [200]}]}'
    sentences = lambda_function.lambda_handler({"data": data, "type": "rating"}, None)
    assert [rating_in(s) for s in sentences] == [pytest.approx([4.9]), pytest.approx([3.9])]
    decoded = lambda_function.lambda_handler({"data": data, "type": "rating", "format": "json"}, None)
    direct = mf_app.test_client().post("/invocations", data=data, content_type="application/json").get_json()
    assert decoded == direct
    # The request as an object rather than a string is sent as its JSON.
    assert rating_in(lambda_function.lambda_handler({"data": json.loads(COURSE_DATA), "type": "rating"}, None))


def test_a_course_event_through_api_gateway_gets_a_proxy_response(proxy, aws):
    aws.setenv("ENDPOINT_NAME_RATING", "ratingModel")
    event = {"body": json.dumps({"data": COURSE_DATA, "type": "rating"})}
    status, body = answer(lambda_function.lambda_handler(event, None))
    assert status == 200 and rating_in(body) == pytest.approx([4.9])
    event = {"body": json.dumps({"data": '{"instances": [{"in0": [99], "in1": [300]}]}', "type": "rating"})}
    status, body = answer(lambda_function.lambda_handler(event, None))
    assert status == 400 and body["error_type"] == "EndpointError" and "unknown user id" in body["error"]


def test_course_event_failures_say_what_failed(proxy, aws):
    aws.setenv("ENDPOINT_NAME_RATING", "ratingModel")
    aws.setenv("ENDPOINT_NAME_REC", "ratingModel")  # a rating model where the classifier belongs
    handler = lambda_function.lambda_handler
    with pytest.raises(EndpointError, match=r"'ratingModel' answered 400: unknown user id.*99") as raised:
        handler({"data": '{"instances": [{"in0": [99], "in1": [300]}]}', "type": "rating"}, None)
    assert raised.value.status == 400
    with pytest.raises(EndpointError, match=r"a recommendation needs a classifier's \[p0, p1\]"):
        handler({"data": COURSE_DATA, "type": "recommendation"}, None)
    aws.setenv("ENDPOINT_NAME_RATING", "no-such-endpoint")
    with pytest.raises(EndpointError, match="ValidationError: Endpoint no-such-endpoint of account .* not found"):
        handler({"data": COURSE_DATA, "type": "rating"}, None)
    with pytest.raises(EventError, match='no "type"'):
        handler({"data": COURSE_DATA}, None)
    with pytest.raises(EventError, match='"data" must be the request body'):
        handler({"data": 7, "type": "rating"}, None)


# ---------------------------------------------------------------------- this image's richer events
def test_rich_events_through_boto3(proxy, aws):
    aws.setenv("ENDPOINT_NAME", "ratingModel")
    status, body = answer(lambda_function.lambda_handler({"type": "rating", "user_id": 10, "item_id": 300}, None))
    assert status == 200 and body["rating"] == pytest.approx(4.9)
    aws.delenv("ENDPOINT_NAME")
    aws.setenv("ENDPOINT_NANE_RATING", "ratingModel")  # without ENDPOINT_NAME: the endpoint of the event's type
    status, body = answer(lambda_function.lambda_handler({"type": "rating", "pairs": [[10, 300], [20, 200]]}, None))
    assert status == 200 and body["ratings"] == pytest.approx([4.9, 3.9])
    status, body = answer(lambda_function.lambda_handler({"type": "rating", "user_id": 99, "item_id": 300}, None))
    assert status == 400 and "unknown user id" in body["error"]
    aws.delenv("ENDPOINT_NANE_RATING")
    status, body = answer(lambda_function.lambda_handler({"type": "rating", "user_id": 10, "item_id": 300}, None))
    assert status == 500 and body["error_type"] == "ConfigurationError"


@pytest.fixture
def handler(mf_model_dir):
    settings = ServingSettings(model_dir=mf_model_dir, family="mxnet_mf.serving", workers=1)
    client = create_app(settings, background_load=False).test_client()

    def invoke(content_type, body, accept):
        response = client.post("/invocations", data=body, headers={"Content-Type": content_type, "Accept": accept})
        return response.status_code, response.data

    return make_handler(invoke)


def test_course_events_through_an_injected_invoker_need_no_endpoint_variables(handler):
    assert rating_in(handler({"data": COURSE_DATA, "type": "rating"})) == pytest.approx([4.9])


def test_rating_and_recommendation_events(handler):
    status, body = answer(handler({"type": "rating", "user_id": 10, "item_id": 300}))
    assert status == 200 and body["rating"] == pytest.approx(4.9)
    status, body = answer(handler({"type": "rating", "pairs": [[10, 300], [20, 200]]}))
    assert body["ratings"] == pytest.approx([4.9, 3.9])
    status, body = answer(handler({"body": json.dumps({"type": "recommendation", "user_id": 10, "k": 2})}))
    assert status == 200 and body["user_id"] == 10 and len(body["recommendations"]) == 2


@pytest.mark.parametrize(
    "event, status, message",
    [
        ({"type": "rating", "user_id": 10}, 400, "needs item_id"),
        ({"type": "forecast"}, 400, '"type" must be'),
        ({"body": "{not json"}, 400, "not JSON"),
        ({"type": "rating", "pairs": [[1]]}, 400, "pairs"),
        ({"type": "rating", "user_id": 99, "item_id": 100}, 400, "unknown user id"),  # the endpoint's own 400
    ],
)
def test_bad_events(handler, event, status, message):
    got, body = answer(handler(event))
    assert got == status and message in body["error"]


class ModelErrorClient:
    """What boto3's sagemaker-runtime raises when the container answers 4xx."""

    def invoke_endpoint(self, **kwargs):
        assert kwargs["EndpointName"] == "mf-endpoint"
        raise botocore.exceptions.ClientError(
            {
                "Error": {"Code": "ModelError", "Message": "Received client error (400)"},
                "OriginalStatusCode": 400,
                "OriginalMessage": '{"error": "unknown user", "error_type": "BadRequest"}',
            },
            "InvokeEndpoint",
        )


def test_model_errors_from_boto3_keep_the_containers_status(monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", "mf-endpoint")
    handler = make_handler(sagemaker_runtime_invoker(client=ModelErrorClient()))
    status, body = answer(handler({"type": "rating", "user_id": 1, "item_id": 2}))
    assert status == 400 and body == {"error": "unknown user", "error_type": "BadRequest", "status": 400}


# ---------------------------------------------------------------------- movie retrieval
UA_BASE = "".join(
    f"{user}\t{movie}\t{3 + (user + movie) % 3}\t88125094{user}\n" for user in (1, 2, 3) for movie in range(1, 7)
)
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://x/1|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|GoldenEye (1995)|01-Jan-1995||http://x/2|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"
    "3|Four Rooms (1995)|01-Jan-1995||http://x/3|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"
    "4|Get Shorty (1995)|01-Jan-1995||http://x/4|0|1|0|0|0|1|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
    "5|Caf\u00e9 au lait (1993)|01-Jan-1993||http://x/5|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "6|Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)|01-Jan-1995||http://x/6|0|0|0|0|0|0|0|0|1|0|0|0|0|0\n"
    "7|Twelve Monkeys (1995)|01-Jan-1995||http://x/7|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|1|0|0|0\n"
).encode("latin-1")
# Movie 5 sits next to movie 2; 7 is nearer still but is not in ua.base, so it is no candidate.
EMBEDDINGS = {
    1: [0.0, 3.0, 0.0],
    2: [1.0, 0.0, 0.5],
    3: [-2.0, 0.0, 0.0],
    4: [1.0, 1.0, 1.0],
    5: [1.1, 0.0, 0.5],
    6: [0.0, 0.0, -3.0],
    7: [1.0, 0.0, 0.5],
}


def embedding_app(embeddings=EMBEDDINGS, max_instances: int | None = None, key: str = "embeddings") -> Flask:
    """Object2Vec's single-input inference: {"in1": [movie]} -> {"embeddings": [...]}; 413 over max_instances."""
    app = Flask("embeddings")

    @app.post("/invocations")
    def invocations():
        instances = request.get_json()["instances"]
        if max_instances is not None and len(instances) > max_instances:
            return {
                "error": f"{len(instances)} instances: the answer would be too large",
                "error_type": "TooLarge",
            }, 413
        unknown = [i["in1"][0] for i in instances if i["in1"][0] not in embeddings]
        if unknown:
            return {"error": f"unknown in1 id(s) {unknown}", "error_type": "BadRequest"}, 400
        return {"predictions": [{key: embeddings[i["in1"][0]]} for i in instances]}

    return app


@pytest.fixture(scope="module")
def moto_s3():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(aws, moto_s3, proxy):
    """A bucket holding the course's two files; ENDPOINT_NAME an embedding endpoint."""
    aws.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    proxy.add("recommendationModel", embedding_app())
    aws.setenv("ENDPOINT_NAME", "recommendationModel")
    name = f"course-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="object2vec/movielens/ml-100k/ua.base", Body=UA_BASE.encode())
    s3.put_object(Bucket=name, Key="object2vec/movielens/ml-100k/u.item", Body=U_ITEM)
    return name


def retrieve(event):
    return lambda_function_movie_retrieval.lambda_handler(event, None)


def test_movie_retrieval_finds_the_nearest_movie(bucket, proxy, capsys):
    result = retrieve({"bucket_name": bucket, "movie_id_to_examine": 2})
    assert result["statusCode"] == 200
    assert (result["nearest_movie_id"], result["nearest_title"]) == (5, "Caf\u00e9 au lait (1993)")
    assert result["distance"] == pytest.approx(0.1)
    assert (result["movie_id"], result["title"], result["candidates"], result["embedding_dim"]) == (
        2,
        "GoldenEye (1995)",
        5,
        3,
    )
    assert [n["movie_id"] for n in result["nearest"]] == [5, 4, 3, 1, 6]
    distances = [n["distance"] for n in result["nearest"]]
    assert distances == sorted(distances)
    assert json.loads(result["body"]) == {k: v for k, v in result.items() if k not in ("statusCode", "body")}
    message = "The closest movie to GoldenEye (1995) in the embedding space is Caf\u00e9 au lait (1993)"
    assert result["message"] == message and message in capsys.readouterr().out
    # One request for every movie of ua.base, in1 only, as the course sends it.
    (sent,) = proxy.requests
    assert json.loads(sent.body) == {"instances": [{"in1": [m]} for m in range(1, 7)]}
    # The course's function also leaves the movie ids in the bucket.
    stored = boto3.client("s3").get_object(Bucket=bucket, Key="object2vec/movielens/ml-100k/unique_movie_ids.txt")
    assert json.loads(stored["Body"].read()) == [1, 2, 3, 4, 5, 6]


def test_movie_retrieval_takes_ids_as_strings_and_k(bucket):
    result = retrieve({"bucket_name": bucket, "movie_id_to_examine": "5", "k": 2})
    assert result["nearest_movie_id"] == 2 and len(result["nearest"]) == 2


@pytest.mark.parametrize("limit", ["container", "runtime"])
def test_an_answer_too_large_is_asked_for_in_parts(bucket, proxy, limit):
    if limit == "container":  # the container says 413
        proxy.add("recommendationModel", embedding_app(max_instances=2))
    else:  # the runtime refuses an answer over its payload limit
        proxy.max_payload_bytes = 120
    result = retrieve({"bucket_name": bucket, "movie_id_to_examine": 2})
    assert result["nearest_movie_id"] == 5
    sizes = [len(json.loads(r.body)["instances"]) for r in proxy.requests]
    assert sizes[0] == 6 and len(sizes) > 2


def test_movie_retrieval_failures_say_what_to_fix(bucket, proxy, aws):
    with pytest.raises(DataError, match="bucket 'no-such-bucket-here' does not exist"):
        retrieve({"bucket_name": "no-such-bucket-here", "movie_id_to_examine": 2})
    boto3.client("s3").delete_object(Bucket=bucket, Key="object2vec/movielens/ml-100k/u.item")
    with pytest.raises(DataError, match=r"ml-100k/u.item does not exist: upload it there, e.g. aws s3api put-object"):
        retrieve({"bucket_name": bucket, "movie_id_to_examine": 2})
    boto3.client("s3").put_object(Bucket=bucket, Key="object2vec/movielens/ml-100k/u.item", Body=U_ITEM)
    with pytest.raises(
        lambda_function_movie_retrieval.EventError, match=r"movie 7 is not in s3://.*ua.base \(6 movies"
    ):
        retrieve({"bucket_name": bucket, "movie_id_to_examine": 7})
    for event in ({"bucket_name": bucket, "movie_id_to_examine": "Toy Story"}, {"movie_id_to_examine": 2}, []):
        with pytest.raises(lambda_function_movie_retrieval.EventError):
            retrieve(event)
    proxy.add("recommendationModel", embedding_app({1: [0.0]}))  # knows only movie 1
    with pytest.raises(
        lambda_function_movie_retrieval.EndpointError, match=r"answered 400: unknown in1 id\(s\) \[2, 3"
    ):
        retrieve({"bucket_name": bucket, "movie_id_to_examine": 2})
    proxy.add("recommendationModel", embedding_app(key="scores"))  # a model that answers no embeddings
    with pytest.raises(lambda_function_movie_retrieval.EndpointError, match="did not answer .*embeddings"):
        retrieve({"bucket_name": bucket, "movie_id_to_examine": 2})
    aws.setenv("ENDPOINT_NAME", "no-such-endpoint")
    with pytest.raises(
        lambda_function_movie_retrieval.EndpointError, match="ValidationError: Endpoint no-such-endpoint"
    ):
        retrieve({"bucket_name": bucket, "movie_id_to_examine": 2})
    aws.delenv("ENDPOINT_NAME")
    with pytest.raises(lambda_function_movie_retrieval.ConfigurationError, match="set ENDPOINT_NAME"):
        retrieve({"bucket_name": bucket, "movie_id_to_examine": 2})


def test_malformed_files_name_the_line(bucket):
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="object2vec/movielens/ml-100k/ua.base", Body=b"1\t2\t3\t4\n\n1,5,3,4\n")
    with pytest.raises(DataError, match="ua.base line 3: expected user, movie, rating, timestamp"):
        retrieve({"bucket_name": bucket, "movie_id_to_examine": 2})
