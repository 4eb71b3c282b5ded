"""The DSSM content model without MXNet: item feature files, the vocabulary, the numpy towers, the journal
that shares added items between serving workers, and the endpoint in-process (Flask test client)."""

import json

import numpy as np
import pytest

from byoc_runtime.app import create_app
from byoc_runtime.errors import DataError
from byoc_runtime.serving_settings import ServingSettings
from mxnet_mf.data import IdIndex
from mxnet_mf.dssm import DssmModel, Towers, profiles
from mxnet_mf.item_features import Vocabulary, parse_items, words_of

U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"
)


def test_u_item_movies_csv_dat_generic_csv_and_json_lines():
    (first, second) = parse_items([("u.item", U_ITEM)]).words
    assert first == ["title:toy", "title:story", "genre:animation", "genre:children's", "genre:comedy", "year:1995",
                     "decade:1990"]  # fmt: skip
    assert "genre:thriller" in second and "title:goldeneye" in second
    movies = parse_items(
        [("movies.csv", 'movieId,title,genres\n7,"Heat, The (1995)",Action|Crime\n8,Up,(no genres listed)\n')]
    )
    assert movies.ids == [7, 8] and movies.titles == ["Heat, The (1995)", "Up"]
    assert movies.words == [["title:heat", "title:the", "genre:action", "genre:crime", "year:1995", "decade:1990"],
                            ["title:up"]]  # fmt: skip
    assert parse_items([("movies.dat", "3::Alien (1979)::Horror|Sci-Fi\n")]).words[0][-2:] == [
        "year:1979",
        "decade:1970",
    ]
    generic = parse_items([("items.csv", "item_id,title,color,description\nsku-1,Red Mug,red,A big mug for tea\n")])
    assert generic.ids == ["sku-1"]
    assert generic.words[0] == ["title:red", "title:mug", "color=red", "description:a", "description:big",
                                "description:mug", "description:for", "description:tea"]  # fmt: skip
    lines = parse_items([("items.jsonl", '{"item_id": 5, "title": "Rocket", "genres": ["Space"], "year": 2001}\n')])
    assert lines.words == [["title:rocket", "genre:space", "year:2001", "decade:2000"]]


def test_bad_item_files_name_the_file_and_line():
    with pytest.raises(DataError, match="items.csv: the header .* names no item id column"):
        parse_items([("items.csv", "name,title\nx,y\n")])
    with pytest.raises(DataError, match="items.jsonl: line 2"):
        parse_items([("items.jsonl", '{"item_id": 1}\n{"title": "no id"}\n')])
    with pytest.raises(DataError, match="line 1: field 'title' must be text"):
        parse_items([("items.jsonl", '{"item_id": 1, "title": {"a": 1}}\n')])
    with pytest.raises(ValueError):
        words_of({"title": [{"nested": 1}]})


def test_the_vocabulary_drops_rare_and_unknown_words():
    vocabulary = Vocabulary.build([["a", "b"], ["a", "c"], ["a", "b"]], min_count=2)
    assert vocabulary.words == ["a", "b"]
    tokens, known = vocabulary.encode([["a", "zzz", "b"], ["zzz"]])
    assert tokens.tolist() == [[1, 2], [0, 0]] and known.tolist() == [2, 0]


def small_model(journal=None) -> DssmModel:
    """Words: 1 'genre:space', 2 'genre:horror', 3 'title:star', 4 'title:ghost'. The towers are identities, so
    an item's vector is its bag of words and a user's is their id row plus their liked items' bag."""
    vocabulary = Vocabulary(["genre:space", "genre:horror", "title:star", "title:ghost"])
    words = np.zeros((5, 4), np.float32)
    words[1:, :] = np.eye(4, dtype=np.float32)
    identity = [(np.eye(4, dtype=np.float32), np.zeros(4, np.float32))]
    user_identity = [(np.vstack([np.eye(4), np.eye(4)]).astype(np.float32), np.zeros(4, np.float32))]
    towers = Towers(words, np.zeros((2, 4), np.float32), identity, user_identity)
    item_tokens = np.array([[1, 3], [2, 4], [1, 0]], np.int32)  # a space, a horror and a genre-only space item
    users = np.array([0, 1]), np.array([0, 1])
    profile_tokens, profile_weights = profiles(5, item_tokens, users[0], users[1], 2, 4)
    return DssmModel(
        towers=towers, vocabulary=vocabulary, users=IdIndex(np.array([10, 20])), user_profile_tokens=profile_tokens,
        user_profile_weights=profile_weights, item_ids=[100, 200, 300], item_tokens=item_tokens,
        titles=["Star Space (1990)", "Ghost", ""], rated_indptr=np.array([0, 1, 2]), rated_indices=np.array([0, 1]),
        journal=journal,
    )  # fmt: skip


def test_items_added_by_one_worker_reach_every_other_through_the_journal(tmp_path, monkeypatch):
    monkeypatch.setenv("BYOC_DSSM_JOURNAL_DIR", str(tmp_path / "journal"))
    (tmp_path / "journal").mkdir()
    small_model().save(tmp_path / "model")
    first, second = DssmModel.load(tmp_path / "model"), DssmModel.load(tmp_path / "model")
    assert first.journal == second.journal
    first.add_items([{"item_id": "new", "title": "Star", "genres": "Space"}])
    assert first.catalogue.lookup("new") == 3 and second.catalogue.lookup("new") == -1
    second.sync()
    assert second.catalogue.lookup("new") == 3
    np.testing.assert_allclose(second.catalogue.vectors[3], first.catalogue.vectors[3])
    third = DssmModel.load(tmp_path / "model")  # a worker started (or restarted) later replays it all
    assert third.catalogue.lookup("new") == 3
    # a replacement keeps the row; the snapshot a request holds is not changed under it
    held = third.catalogue
    third.add_items([{"item_id": "new", "title": "Ghost", "genres": "Horror"}])
    assert third.catalogue.lookup("new") == 3 and len(third.catalogue) == 4
    assert not np.allclose(held.vectors[3], third.catalogue.vectors[3])


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("BYOC_DSSM_JOURNAL_DIR", str(tmp_path))
    small_model().save(tmp_path / "model")
    settings = ServingSettings(model_dir=tmp_path / "model", family="mxnet_mf.serving", max_payload_mb=1.0, workers=1)
    return create_app(settings, background_load=False).test_client()


def post(client, body):
    response = client.post("/invocations", data=json.dumps(body), headers={"Content-Type": "application/json"})
    return response.status_code, response.get_json()


def test_the_endpoint_recommends_never_rated_and_added_items(client):
    status, answer = post(client, {"user_id": 10, "k": 5})
    assert status == 200
    ranked = [r["item_id"] for r in answer["predictions"][0]["recommendations"]]
    assert ranked[0] == 300 and 100 not in ranked  # the never-rated space item first; the rated one excluded
    status, answer = post(client, {"instances": [
        {"task": "add_item", "item_id": 400, "title": "Star Star", "genres": "Space", "studio": "Acme"},
        {"user_id": 10, "item_id": 400}, {"user_id": 20, "item_id": 400}, {"item_id": 400, "k": 1},
    ]})  # fmt: skip
    assert status == 200, answer
    added, space_fan, horror_fan, similar = answer["predictions"]
    assert added == {"item_id": 400, "added": True, "known_words": 3, "unknown_words": 1}  # star twice, space; studio
    assert space_fan["score"] > 0.5 > horror_fan["score"]
    assert similar["similar_items"][0]["item_id"] in (100, 300)
    status, answer = post(client, {"history": [200], "k": 1})
    assert answer["predictions"][0]["recommendations"][0]["item_id"] not in (200,)


def test_bad_dssm_requests_get_400_naming_the_problem(client):
    for body, words in (
        ({"user_id": 99}, "unknown user id"),
        ({"user_id": 10, "item_id": 999}, "add them first"),
        ({"history": "100"}, "history must be a list"),
        ({"task": "add_item", "item_id": [1], "title": "x"}, "item_id must be an id"),
        ({"task": "add_item", "item_id": 5, "genres": {"a": 1}}, "field 'genres' must be text"),
        ({"in0": [10]}, "not in0/in1"),
    ):
        status, answer = post(client, body)
        assert status == 400 and words in answer["error"], (body, answer)
    status, answer = post(client, {"instances": [{"user_id": 99, "k": 2}], "unknown_ids": "fallback"})
    assert status == 200 and len(answer["predictions"][0]["recommendations"]) == 2
