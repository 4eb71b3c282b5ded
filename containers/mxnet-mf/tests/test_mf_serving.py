"""The endpoint in-process (Flask test client): every task, every format, every bad request."""

import json

import pytest

from byoc_runtime.app import create_app
from byoc_runtime.serving_settings import ServingSettings


@pytest.fixture
def client(mf_model_dir):
    settings = ServingSettings(model_dir=mf_model_dir, family="mxnet_mf.serving", max_payload_mb=1.0, workers=1)
    return create_app(settings, background_load=False).test_client()


def post(client, body, content_type="application/json", accept="application/json"):
    data = json.dumps(body) if not isinstance(body, str | bytes) else body
    return client.post("/invocations", data=data, headers={"Content-Type": content_type, "Accept": accept})


def test_object2vec_and_named_rating_requests(client):
    response = post(client, {"instances": [{"in0": [10], "in1": [300]}, {"user_id": 10, "item_id": 300}]})
    assert response.status_code == 200, response.data
    first, second = response.get_json()["predictions"]
    assert first["scores"][0] == pytest.approx(4.9) and second["rating"] == pytest.approx(4.9)


def test_string_ids_and_a_bare_instance(client):
    response = post(client, {"user_id": "10", "item_id": "300"})
    assert response.get_json()["predictions"][0]["rating"] == pytest.approx(4.9)


def test_recommendation_excludes_rated_items_and_carries_titles(client):
    response = post(client, {"instances": [{"user_id": 10, "k": 2}, {"user_id": 10, "k": 4, "exclude_rated": False}]})
    excluded, everything = response.get_json()["predictions"]
    assert excluded["user_id"] == 10 and [r["item_id"] for r in excluded["recommendations"]][:1] == [300]
    assert 100 not in [r["item_id"] for r in excluded["recommendations"]]
    assert len(excluded["recommendations"]) == 2
    assert {r["item_id"] for r in everything["recommendations"]} == {100, 200, 300, 400}
    titles = {r["item_id"]: r.get("title") for r in everything["recommendations"]}
    assert titles[100] == "A (1990)" and titles[300] is None
    scores = [r["score"] for r in everything["recommendations"]]
    assert scores == sorted(scores, reverse=True)


def test_similar_items_finds_the_planted_neighbour(client):
    response = post(client, {"instances": [{"item_id": 100, "k": 1}]})
    assert response.get_json()["predictions"] == [
        {"item_id": 100, "similar_items": [{"item_id": 300, "similarity": pytest.approx(0.99875, abs=1e-4)}]}
    ]


def test_a_request_may_mix_tasks_and_set_the_task_explicitly(client):
    instances = [{"item_id": 100, "k": 1}, {"user_id": 20, "item_id": 200}, {"task": "recommend", "user_id": 30}]
    body = {"instances": instances}
    similar, rating, recommend = post(client, body).get_json()["predictions"]
    assert "similar_items" in similar and "rating" in rating and "recommendations" in recommend


def test_csv_and_jsonlines(client):
    response = post(client, "10,300\n20,200\n", "text/csv", "text/csv")
    assert [float(v) for v in response.data.decode().split()] == pytest.approx([4.9, 3.9])
    lines = b'{"user_id": 10, "item_id": 300}\n{"item_id": 100, "k": 1}\n'
    response = post(client, lines, "application/jsonlines", "application/jsonlines")
    rows = [json.loads(line) for line in response.data.decode().splitlines()]
    assert rows[0]["rating"] == pytest.approx(4.9) and rows[1]["similar_items"][0]["item_id"] == 300


def test_unknown_ids_are_a_400_unless_fallback_is_asked_for(client):
    response = post(client, {"instances": [{"user_id": 99, "item_id": 100}]})
    assert response.status_code == 400
    assert "unknown user id(s) not seen in training: 99 (instance 0)" in response.get_json()["error"]
    assert post(client, {"instances": [{"item_id": 12345}]}).status_code == 400
    instances = [{"user_id": 99, "item_id": 100}, {"user_id": 99}]
    response = post(client, {"unknown_ids": "fallback", "instances": instances})
    rating, recommend = response.get_json()["predictions"]
    assert rating["rating"] == pytest.approx(3.2)
    assert recommend["fallback"].startswith("popularity") and len(recommend["recommendations"]) == 4


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": []}, "at least one instance"),
        ({"instances": [5]}, "must be an object"),
        ({"instances": [{"foo": 1}]}, "none of in0/in1, user_id, item_id"),
        ({"instances": [{"in0": 10, "in1": [300]}]}, "one-element list"),
        ({"instances": [{"user_id": [1, 2], "item_id": 3}]}, "must be an id"),
        ({"instances": [{"user_id": 10, "k": 0}]}, "k must be a whole number"),
        ({"instances": [{"user_id": 10, "exclude_rated": "yes"}]}, "exclude_rated must be true or false"),
        ({"instances": [{"task": "explain", "user_id": 10}]}, "unknown task"),
        ({"unknown_ids": "ignore", "instances": [{"user_id": 10}]}, "unknown_ids"),
    ],
)
def test_bad_requests_are_400_with_a_reason(client, body, message):
    response = post(client, body)
    assert response.status_code == 400, response.data
    assert message in response.get_json()["error"]


def test_malformed_bodies_and_types(client):
    assert post(client, b"{not json").status_code == 400
    assert post(client, b"10,300,5\n", "text/csv").status_code == 400
    assert post(client, b"\x00", "image/png").status_code == 415
    assert post(client, {"user_id": 10, "item_id": 300}, accept="image/png").status_code == 406
    assert post(client, {"user_id": 10, "item_id": 300}).status_code == 200  # still serving


def test_the_one_pass_object2vec_path_answers_as_the_general_one(mf_model_dir, monkeypatch):
    """predict_fn's fast path for the usual Object2Vec request against the instance-by-instance path, on the
    same requests; requests it does not take (unknown ids, a named task, other shapes) get the general answers."""
    from mxnet_mf import serving

    model = serving.model_fn(str(mf_model_dir))
    pairs = [(10, 300), (20, 200), (30, 100), (10, 400)]
    usual = serving.Query([{"in0": [u], "in1": [i]} for u, i in pairs])
    fast = serving.predict_fn(usual, model)
    assert serving._object2vec_ratings(usual, model) == fast
    assert fast == serving._predict_any(usual, model, fallback=False)
    assert fast == [{"scores": [pytest.approx(r["rating"])]} for r in serving.predict_fn(
        serving.Query([{"user_id": u, "item_id": i} for u, i in pairs]), model)]  # fmt: skip
    for other in (
        serving.Query([{"in0": [10], "in1": [999999]}]),  # unknown: the general path's 400
        serving.Query([{"in0": [10], "in1": [300]}], {"task": "rating"}),
        serving.Query([{"in0": ["10"], "in1": [300]}]),
        serving.Query([{"in0": [True], "in1": [300]}]),
        serving.Query([{"in0": [10, 11], "in1": [300]}]),
        serving.Query([{"in0": [10]}]),
    ):
        assert serving._object2vec_ratings(other, model) is None
    with pytest.raises(Exception, match="unknown item"):
        serving.predict_fn(serving.Query([{"in0": [10], "in1": [999999]}]), model)
