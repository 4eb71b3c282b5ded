"""Object2Vec mode without MXNet: its JSON Lines, its hyperparameters (mapped, no effect, unknown) and its
inference shapes (regressor scores, classifier scores + predicted_label, single-input embeddings, JSON
Lines in and out, the 6 MB answer limit), through the in-process server."""

import json
import math

import numpy as np
import pytest
from mf_fixtures import ITEM_FACTORS, USER_FACTORS, make_object2vec_model

from byoc_runtime.app import create_app
from byoc_runtime.errors import DataError, HyperparameterError
from byoc_runtime.hyperparameters import validate
from byoc_runtime.serving_settings import ServingSettings
from mxnet_mf import object2vec
from mxnet_mf.data import Expect, is_jsonlines, parse_jsonlines
from mxnet_mf.train import SPEC

COURSE_RATING = {  # the course notebook's regressor dict, as the SDK passes it (strings)
    "_kvstore": "device", "_num_gpus": "auto", "_num_kv_servers": "auto", "bucket_width": "0",
    "early_stopping_patience": "3", "early_stopping_tolerance": "0.01", "enc0_cnn_filter_width": "3",
    "enc0_layers": "auto", "enc0_max_seq_len": "1", "enc0_network": "pooled_embedding",
    "enc0_token_embedding_dim": "300", "enc0_vocab_size": "944", "enc1_layers": "auto", "enc1_max_seq_len": "1",
    "enc1_network": "pooled_embedding", "enc1_token_embedding_dim": "300", "enc1_vocab_size": "1684",
    "enc_dim": "1024", "epochs": "20", "learning_rate": "0.001", "mini_batch_size": "64",
    "mlp_activation": "tanh", "mlp_dim": "256", "mlp_layers": "1", "num_classes": "2", "optimizer": "adam",
    "output_layer": "mean_squared_error",
}  # fmt: skip


# ---------------------------------------------------------------------- JSON Lines
def test_jsonlines_ratings_and_their_detection():
    text = '{"in0": [196], "in1": [242], "label": 3.0}\n\n{"in0": [186], "in1": [302], "label": 4}\n'
    assert is_jsonlines(None, text.encode()) and not is_jsonlines(None, b"196\t242\t3\t881250949\n")
    assert is_jsonlines("application/jsonlines", b"") and not is_jsonlines("text/csv", text.encode())
    table = parse_jsonlines(text, "train.jsonl")
    assert table.users.tolist() == [196, 186] and table.items.tolist() == [242, 302]
    assert table.ratings.tolist() == [3.0, 4.0]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"in0": [196], "in1": [242]}', "label"),
        ('{"in0": 196, "in1": [242], "label": 1}', "in0"),
        ('{"in0": [196, 7], "in1": [242], "label": 1}', "in0"),
        ('{"in0": [196], "in1": [242], "label": "x"}', "label"),
        ("[196, 242, 3]", "object"),
        ("{not json", "not JSON"),
    ],
)
def test_a_bad_jsonlines_row_names_its_line(line, reason):
    with pytest.raises(DataError, match=rf"train.jsonl line 2.*{reason}"):
        parse_jsonlines('{"in0": [1], "in1": [2], "label": 1}\n' + line, "train.jsonl")


def test_tokens_outside_the_vocabulary_and_labels_outside_the_classes_fail_clearly():
    with pytest.raises(DataError, match=r"line 1: the in1 \(item\) token 1684 is outside enc1_vocab_size 1684"):
        parse_jsonlines('{"in0": [1], "in1": [1684], "label": 1}', "train.jsonl", Expect(944, 1684))
    with pytest.raises(DataError, match=r"label 4 is not a class .*num_classes 2.*binarize"):
        parse_jsonlines('{"in0": [1], "in1": [2], "label": 4}', "train.jsonl", Expect(944, 1684, 2))


# ---------------------------------------------------------------------- hyperparameters
def test_the_course_dict_selects_object2vec_mode_and_maps_what_has_a_meaning():
    hp = validate(COURSE_RATING, SPEC)
    assert object2vec.mode(COURSE_RATING, hp["model"]) == "object2vec"
    object2vec.check(COURSE_RATING, hp)
    settings = object2vec.network_settings(hp)
    assert settings == {
        "token_dims": [300, 300],
        "enc_dim": 1024,
        "comparators": ["hadamard", "concat", "abs_diff"],
        "mlp_dim": 256,
        "mlp_layers": 1,
        "mlp_activation": "tanh",
        "output_layer": "mean_squared_error",
        "num_classes": 1,  # a regression has one output, whatever num_classes says
    }
    assert hp["mini_batch_size"] == 64 and hp["learning_rate"] == 0.001 and hp["early_stopping_patience"] == 3


def test_no_effect_names_are_listed_in_one_line_and_unknown_names_still_fail():
    line = object2vec.no_effect_line(COURSE_RATING)
    assert line.count("\n") == 0 and "_kvstore='device'" in line and "enc0_network='pooled_embedding'" in line
    assert "enc_dim" not in line  # mapped, not "no effect"...
    assert "enc_dim=" in object2vec.no_effect_line(COURSE_RATING, core=True)  # ...but for the core
    assert object2vec.no_effect_line({"enc_dim": "8"}) is None
    with pytest.raises(HyperparameterError, match="enc2_vocab_size"):
        validate({**COURSE_RATING, "enc2_vocab_size": "5"}, SPEC)


def test_mixing_modes_fails_with_the_fix():
    with pytest.raises(HyperparameterError, match=r"enc_dim.*model object2vec"):
        object2vec.mode({"model": "mf", "enc_dim": "8"}, "mf")
    hp = validate({"enc_dim": "8", "num_factors": "4"}, SPEC)
    with pytest.raises(HyperparameterError, match="num_factors"):
        object2vec.check({"enc_dim": "8", "num_factors": "4"}, hp)
    with pytest.raises(HyperparameterError, match="comparator_list.*'cosine'"):
        object2vec.comparators("hadamard, cosine")


# ---------------------------------------------------------------------- inference
def client_for(tmp_path, model, **settings):
    model.save(tmp_path)
    serving = ServingSettings(model_dir=tmp_path, family="mxnet_mf.serving", workers=1, **settings)
    return create_app(serving, background_load=False).test_client()


def post(client, body, content_type="application/json", accept="application/json"):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/invocations", data=data, headers={"Content-Type": content_type, "Accept": accept})


def test_regressor_scores_match_the_biased_dot_product(tmp_path):
    client = client_for(tmp_path, make_object2vec_model())
    response = post(client, {"instances": [{"in0": [10], "in1": [300]}, {"in0": [30], "in1": [400]}]})
    assert response.status_code == 200, response.data
    # user 10 . item 300 = 2.0, + 0.1 + (-0.2) + 3 = 4.9; user 30 . item 400 = -1.0, + 0 + 0.1 + 3 = 2.1
    assert response.get_json() == {"predictions": [{"scores": [pytest.approx(4.9)]}, {"scores": [pytest.approx(2.1)]}]}


def test_classifier_answers_scores_and_predicted_label(tmp_path):
    client = client_for(tmp_path, make_object2vec_model(num_classes=2))
    response = post(client, {"instances": [{"in0": [10], "in1": [300]}, {"in0": [30], "in1": [400]}]})
    assert response.status_code == 200, response.data
    liked, disliked = response.get_json()["predictions"]
    p_liked = 1 / (1 + math.exp(-8.0))  # logits [0, 4 * 2.0]
    assert liked["scores"] == [pytest.approx(1 - p_liked), pytest.approx(p_liked)] and liked["predicted_label"] == 1
    assert disliked["predicted_label"] == 0 and disliked["scores"][0] == pytest.approx(1 / (1 + math.exp(-4.0)))
    unknown = post(client, {"instances": [{"in0": [99], "in1": [300]}]})
    assert unknown.status_code == 400 and "99" in unknown.get_json()["error"]
    # fallback: this classifier has no biases, so the training labels' share of class 1 (mean_rating 0.5)
    prior = post(client, {"instances": [{"in0": [99], "in1": [300]}], "unknown_ids": "fallback"}).get_json()
    assert prior["predictions"][0]["scores"] == [pytest.approx(0.5), pytest.approx(0.5)]


def test_single_input_instances_answer_the_towers_embeddings(tmp_path):
    client = client_for(tmp_path, make_object2vec_model())
    response = post(client, {"instances": [{"in1": [100]}, {"in0": [20]}, {"in1": [400]}]})
    assert response.status_code == 200, response.data
    assert response.get_json()["predictions"] == [
        {"embeddings": ITEM_FACTORS[0].tolist()},
        {"embeddings": USER_FACTORS[1].tolist()},
        {"embeddings": ITEM_FACTORS[3].tolist()},
    ]
    unknown = post(client, {"instances": [{"in1": [101]}]})
    assert unknown.status_code == 400 and "unknown item id(s) not seen in training: 101" in unknown.get_json()["error"]


def test_jsonlines_in_and_out(tmp_path):
    client = client_for(tmp_path, make_object2vec_model(num_classes=2))
    body = '{"in0": [10], "in1": [300]}\n{"in1": [200]}\n'
    response = post(client, body, "application/jsonlines", "application/jsonlines")
    assert response.status_code == 200 and response.mimetype == "application/jsonlines"
    lines = [json.loads(line) for line in response.data.decode().splitlines()]
    assert lines[0]["predicted_label"] == 1 and lines[1] == {"embeddings": ITEM_FACTORS[1].tolist()}


def test_an_answer_over_the_response_limit_is_a_413_that_says_how_many_fit(tmp_path):
    model = make_object2vec_model()
    # 64-float item embeddings: about 1.3 kB of JSON per movie, over a 0.05 MB limit at 100 movies
    model.params["item_embedding"] = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    client = client_for(tmp_path, model, max_response_mb=0.05)
    many = post(client, {"instances": [{"in1": [100]}] * 100})
    assert many.status_code == 413, many.data
    reason = many.get_json()["error"]
    fit = int(reason.split("send at most ")[1].split()[0])
    assert "over the 52428-byte limit" in reason and 10 < fit < 100
    assert post(client, {"instances": [{"in1": [100]}] * fit}).status_code == 200
    assert post(client, {"instances": [{"in0": [10]}]}).status_code == 200  # still serving
