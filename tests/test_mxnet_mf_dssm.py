"""mxnet-mf's DSSM content model (model=dssm) in its real image: trained on generated ratings whose users like
planted genres, served by two workers; brand-new items (never in training, added to the deployed model by
their features) are recommended to the users whose history matches their content, every worker answers for
them, and words the model never saw are dropped, not fatal."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from local.opt_ml import ChannelSpec
from mxnet_mf import synthetic
from tests.images import build_image

pytestmark = pytest.mark.docker
HYPERPARAMETERS = {"model": "dssm", "epochs": 8, "seed": 1}
GENRES = list(synthetic.GENRE_WORDS)


@pytest.fixture(scope="module")
def image():
    return build_image("mxnet-mf")


@pytest.fixture(scope="module")
def content(tmp_path_factory):
    root = tmp_path_factory.mktemp("content")
    # 30 items a genre; a user rates 24 of their genre's: the new item competes with about 6 unrated ones.
    data = synthetic.generate_content(num_users=240, num_items=180, per_user=40, seed=3)
    data.ratings.write(root / "train" / "u.data", "u.data")
    data.write_items(root / "items" / "movies.csv", "movies.csv")
    return root, data


@pytest.fixture(scope="module")
def trained(harness, image, content):
    root, _ = content
    result = harness.train(image, HYPERPARAMETERS, {n: ChannelSpec(root / n) for n in ("train", "items")})
    assert result.ok, result.logs()
    return result


@pytest.fixture(scope="module")
def endpoint(harness, image, trained):
    with harness.serve(image, trained.model_archive, environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}) as endpoint:
        yield endpoint


def predict(endpoint, body) -> list:
    response = endpoint.invoke(json.dumps(body))
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_brand_new_items_go_to_the_users_whose_history_matches_their_content(endpoint, content):
    _, data = content
    rng = np.random.default_rng(11)
    new = [{"task": "add_item", **synthetic.content_item(5000 + n, genre, rng)} for n, genre in enumerate(GENRES)]
    answers = predict(endpoint, {"instances": new})
    assert [a["added"] for a in answers] == [True] * len(GENRES)
    assert all(a["known_words"] >= 4 for a in answers), answers  # a rare year may be unknown
    fans = {genre: [u for u, liked in data.likes.items() if liked == (genre,)] for genre in GENRES}
    for n, genre in enumerate(GENRES):
        users = fans[genre]
        others = [u for u, liked in data.likes.items() if genre not in liked][:40]
        top = predict(endpoint, {"instances": [{"user_id": u, "k": 10} for u in users + others]})
        hit = [5000 + n in [r["item_id"] for r in answer["recommendations"]] for answer in top]
        fan_rate, other_rate = np.mean(hit[: len(users)]), np.mean(hit[len(users) :])
        assert fan_rate >= 0.8 and other_rate <= 0.05, (genre, fan_rate, other_rate)
    # nearest items by content: the new Space item's neighbours are Space items
    similar = predict(endpoint, {"item_id": 5000, "k": 5})[0]["similar_items"]
    assert all(data.genre_of.get(s["item_id"]) == GENRES[0] for s in similar), similar


def test_every_worker_answers_for_an_item_added_after_deployment(endpoint, content):
    item = {"task": "add_item", "item_id": "late-1", "title": "Haunted Ghost Night", "genres": "Horror", "year": 2021}
    assert predict(endpoint, item)[0]["added"] is True
    fan = next(u for u, liked in content[1].likes.items() if liked == ("Horror",))
    body = json.dumps({"user_id": fan, "item_id": "late-1"})

    def ask(_):
        with requests.Session() as session:  # a connection of its own: the two workers share the load
            response = session.post(
                f"{endpoint.url}/invocations", data=body, headers={"Content-Type": "application/json"}
            )
        return response.status_code, response.text

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(48)))
    assert all(status == 200 and '"score"' in text for status, text in answers), answers
    # Workers started after the add (here: both killed and replaced) replay the journal.
    booted = [line.rsplit(":", 1)[1].strip() for line in endpoint.logs().splitlines() if "Booting worker" in line]
    endpoint.container.exec_run(["kill", "-9", *booted])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum("Booting worker" in line for line in endpoint.logs().splitlines()) < 4:
        time.sleep(0.2)
    time.sleep(1.0)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(16)))
    assert all(status == 200 and '"score"' in text for status, text in answers), answers
    # sending it again replaces its features
    again = predict(endpoint, {**item, "genres": "Sports", "title": "Champion Team Race"})[0]
    assert again == {"item_id": "late-1", "replaced": True, "known_words": 4, "unknown_words": 2}  # 2021: no such year


def test_unknown_words_are_dropped_and_counted(endpoint, content):
    fan = next(u for u, liked in content[1].likes.items() if liked == ("Space",))
    odd = {"task": "add_item", "item_id": 7001, "title": "Zyxxyq Qwrtp Galaxy", "genres": ["Space", "Polka"],
           "studio": "Nowhere Pictures"}  # fmt: skip
    answer = predict(endpoint, odd)[0]
    assert answer["known_words"] == 2 and answer["unknown_words"] == 4, answer  # galaxy, genre:space
    nothing_known = {"task": "add_item", "item_id": 7002, "title": "Qqq Zzz", "genres": "Polka"}
    assert predict(endpoint, nothing_known)[0]["known_words"] == 0
    top = predict(endpoint, {"user_id": fan, "k": 1000})[0]["recommendations"]
    ranked = [r["item_id"] for r in top]
    assert ranked.index(7001) < ranked.index(7002)
    # and an item scored by its features alone, without adding it
    space, cooking = predict(endpoint, {"instances": [
        {"user_id": fan, "item": {"title": "Rocket Orbit", "genres": "Space"}},
        {"user_id": fan, "item": {"title": "Chef Kitchen", "genres": "Cooking"}},
    ]})  # fmt: skip
    assert space["score"] > cooking["score"]


def test_bad_dssm_requests_are_4xx_json(endpoint):
    for body in (
        {"user_id": 999999, "k": 3},  # unknown user, no history
        {"history": [123456], "k": 3},  # history of unknown items
        {"task": "add_item", "item_id": 1, "title": {"nested": "object"}},
        {"user_id": 1, "item_id": "never-added"},
        {"in0": [1], "in1": [2]},
    ):
        response = endpoint.invoke(json.dumps(body))
        assert response.status_code == 400, (body, response.text)
        assert "error" in response.json()
    assert endpoint.ping().status_code == 200


def test_a_user_unseen_in_training_is_served_from_their_history(endpoint, content):
    _, data = content
    western = [i for i, genre in data.genre_of.items() if genre == "Western"][:5]
    top = predict(endpoint, {"history": western, "k": 10})[0]["recommendations"]
    assert sum(data.genre_of.get(r["item_id"]) == "Western" for r in top) >= 8, top
    assert not {r["item_id"] for r in top} & set(western)


def test_dssm_without_an_items_channel_fails_clearly(harness, image, content):
    root, _ = content
    result = harness.train(image, HYPERPARAMETERS, {"train": ChannelSpec(root / "train")})
    assert not result.ok
    assert "model=dssm needs an 'items' channel" in result.master.failure


def test_the_image_tower_places_an_item_known_only_by_its_image(harness, image, content, tmp_path):
    """An item_images channel (uint8 stand-ins for posters, two bright places per genre): a new item whose words
    say nothing of its genre is still recommended to that genre's fans, through its image."""
    root, data = content
    data.write_images(root / "item_images" / "posters.npz")
    channels = {n: ChannelSpec(root / n) for n in ("train", "items", "item_images")}
    result = harness.train(image, HYPERPARAMETERS, channels)
    assert result.ok, result.logs()
    assert "item images: 180 of 180 items, 16 numbers each" in result.logs()
    rng = np.random.default_rng(4)
    with harness.serve(image, result.model_archive) as endpoint:
        new = [{"task": "add_item", "item_id": 6000 + n, "title": "The Last Day",
                "image": synthetic.genre_image(genre, rng).tolist()} for n, genre in enumerate(GENRES)]  # fmt: skip
        predict(endpoint, {"instances": new})
        hits, misses = [], []
        for n, genre in enumerate(GENRES):
            fans = [u for u, liked in data.likes.items() if liked == (genre,)][:15]
            others = [u for u, liked in data.likes.items() if genre not in liked][:15]
            top = predict(endpoint, {"instances": [{"user_id": u, "k": 10} for u in fans + others]})
            found = [6000 + n in [r["item_id"] for r in answer["recommendations"]] for answer in top]
            hits, misses = hits + found[: len(fans)], misses + found[len(fans) :]
        assert np.mean(hits) >= 0.6 and np.mean(misses) <= 0.1, (np.mean(hits), np.mean(misses))
        wrong = endpoint.invoke(json.dumps({"task": "add_item", "item_id": 1, "image": [1, 2, 3]}))
        assert wrong.status_code == 400 and "16" in wrong.json()["error"]


def test_a_dssm_job_resumes_from_its_checkpoint(harness, image, content, tmp_path):
    root, _ = content
    channels = {n: ChannelSpec(root / n) for n in ("train", "items")}
    first = harness.train(image, {**HYPERPARAMETERS, "epochs": 2}, channels, checkpoint_dir=tmp_path)
    assert first.ok, first.logs()
    second = harness.train(image, {**HYPERPARAMETERS, "epochs": 4}, channels, checkpoint_dir=tmp_path)
    assert second.ok, second.logs()
    assert "resuming the DSSM from its checkpoint at epoch 2" in second.master.logs
    metrics = json.loads((second.model_dir / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 2 and [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4]


def test_a_validation_channel_logs_hit_ratio_well_above_random(harness, image, tmp_path):
    data = synthetic.generate_content(num_users=240, num_items=180, per_user=40, seed=5)
    train, test = data.ratings.split(0.2, seed=1)
    train.write(tmp_path / "train" / "u.base", "u.data")
    test.write(tmp_path / "test" / "u.test", "u.data")
    data.write_items(tmp_path / "items" / "items.jsonl", "jsonl")
    result = harness.train(image, HYPERPARAMETERS, {n: ChannelSpec(tmp_path / n) for n in ("train", "test", "items")})
    assert result.ok, result.logs()
    metrics = json.loads((result.model_dir / "metrics.json").read_text())
    assert metrics["validation_hr_at_10"] > 0.3, metrics  # 100 unrated candidates: random is ~0.1
    assert "#metric: validation_ndcg_at_10=" in result.master.logs
