"""Data prep: MovieLens formats, the per-user hold-out, negative sampling and the course's npy layout."""

from __future__ import annotations

import numpy as np
import pytest

from byoc_runtime.errors import DataError
from ncf_tf import prep, synthetic
from ncf_tf.ratings import find_ratings_file, parse_ratings


@pytest.fixture(scope="module")
def rows():
    return synthetic.planted_ratings(n_users=40, n_items=60, per_user=12, groups=4, seed=1)


@pytest.mark.parametrize("fmt", synthetic.FORMATS)
def test_every_movielens_format_reads_the_same(tmp_path, rows, fmt):
    path = synthetic.write(rows, tmp_path, fmt)
    ratings = parse_ratings(path.read_bytes(), path.name)
    assert np.array_equal(ratings.users, rows[:, 0]) and np.array_equal(ratings.items, rows[:, 1])
    assert np.array_equal(ratings.ratings, rows[:, 2]) and np.array_equal(ratings.timestamps, rows[:, 3])
    assert find_ratings_file(tmp_path) == path


@pytest.mark.parametrize("text", [b"", b"userId,movieId\n1,2\n", b"1\t2\tthree\t4\n", b"a,b,c,d\n1,2,x,4\n"])
def test_bad_files_are_data_errors(text):
    with pytest.raises(DataError):
        parse_ratings(text, "ratings.csv")


def test_holdout_takes_each_users_latest_and_keeps_short_histories():
    # user 1: 3 ratings (latest is item 30); user 2: 1 rating, too short to hold one out.
    text = b"1::10::5::100\n1::30::4::300\n1::20::3::200\n2::10::5::50\n"
    data = prep.from_ratings(parse_ratings(text, "ratings.dat"), holdout=1)
    assert data.user_ids.tolist() == [1, 2] and data.item_ids.tolist() == [10, 20, 30]
    assert list(zip(data.test_users.tolist(), data.test_items.tolist(), strict=True)) == [(0, 2)]
    train = sorted(zip(data.train_users.tolist(), data.train_items.tolist(), strict=True))
    assert train == [(0, 0), (0, 1), (1, 0)]


def test_holdout_of_ten_as_the_course(rows):
    data = prep.from_ratings(parse_ratings(_u_data(rows), "u.data"), holdout=10)
    assert np.all(np.bincount(data.test_users) == 10)  # every synthetic user has 12 ratings
    assert len(data.train_users) + len(data.test_users) == len(rows)


def test_min_rating_drops_low_ratings(rows):
    data = prep.from_ratings(parse_ratings(_u_data(rows), "u.data"), holdout=1, min_rating=4)
    assert len(data.train_users) + len(data.test_users) == int((rows[:, 2] >= 4).sum())


def test_negatives_are_never_rated_items(rows):
    data = prep.from_ratings(parse_ratings(_u_data(rows), "u.data"), holdout=1)
    known = data.known_keys()
    users, items, labels = prep.with_negatives(data.train_users, data.train_items, 5, data.n_items, known,
                                               np.random.default_rng(0))
    assert labels.sum() == len(data.train_users) and len(labels) == 6 * len(data.train_users)
    negative = labels == 0
    assert not np.isin(prep.pair_keys(users[negative], items[negative], data.n_items), known).any()
    rated = set(zip(rows[:, 0].tolist(), rows[:, 1].tolist(), strict=True))
    raw = zip(data.user_ids[users[negative]].tolist(), data.item_ids[items[negative]].tolist(), strict=True)
    assert not rated & set(raw)


def test_a_user_who_rated_everything_gets_no_negatives():
    data = prep.from_ratings(parse_ratings(b"1\t1\t5\t1\n1\t2\t5\t2\n2\t1\t5\t1\n", "u.data"), holdout=5)
    mask = prep.users_with_unrated_items(data, data.known_keys())
    assert mask.tolist() == [False, False, True]
    with pytest.raises(DataError):
        prep.sample_negatives(np.array([0]), data.n_items, data.known_keys(), np.random.default_rng(0))


def test_eval_set_ranks_the_held_out_item_against_unrated_ones(rows):
    data = prep.from_ratings(parse_ratings(_u_data(rows), "u.data"), holdout=1)
    ev = prep.eval_set(data, seed=0, negatives=20)
    assert ev.candidates.shape == (len(data.test_users), 21)
    assert np.array_equal(ev.candidates[:, 0], data.test_items)
    users = np.repeat(ev.users, 20)
    assert not np.isin(prep.pair_keys(users, ev.candidates[:, 1:].ravel(), data.n_items), data.known_keys()).any()
    assert ev.labelled.shape == (21 * len(ev.users), 3) and ev.labelled[:, 2].sum() == len(ev.users)


def test_cli_writes_the_course_layout_and_training_reads_it_back(tmp_path, rows):
    source = synthetic.write(rows, tmp_path / "raw", "ratings.dat")
    assert prep.main(["--input", str(source.parent), "--output", str(tmp_path / "out"), "--holdout", "2"]) == 0
    train, test = np.load(tmp_path / "out" / "train.npy"), np.load(tmp_path / "out" / "test.npy")
    assert train.shape[1] == 3 and (train[:, 2] == 0).sum() == 5 * (train[:, 2] == 1).sum()  # --n-neg 5
    assert (test[:, 2] == 1).sum() == 2 * 40
    data = prep.load_channel(tmp_path / "out", holdout=1, min_rating=0)
    assert data.test_labelled is not None and len(data.test_users) == 80
    assert len(data.train_users) == (train[:, 2] == 1).sum()
    assert prep.main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "x")]) == 2


def test_channel_without_ratings_names_what_it_found(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt"):
        prep.load_channel(tmp_path, 1, 0)


def _u_data(rows):
    return "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows).encode()
