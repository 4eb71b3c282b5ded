"""MovieLens file formats, the id index, and the generated data's planted structure."""

import numpy as np
import pytest

from byoc_runtime.errors import DataError
from mxnet_mf import synthetic
from mxnet_mf.data import IdIndex, parse_ratings, parse_titles


@pytest.mark.parametrize(
    "text",
    [
        "196\t242\t3\t881250949\n186\t302\t3\t891717742\n",  # u.data / ua.base / u1.base
        "196::242::3::881250949\n186::302::3::891717742\n",  # ratings.dat
        "userId,movieId,rating,timestamp\n196,242,3.0,881250949\n186,302,3.0,891717742\n",  # ratings.csv
    ],
)
def test_every_movielens_rating_format(text):
    table = parse_ratings(text)
    assert table.users.tolist() == [196, 186] and table.items.tolist() == [242, 302]
    assert table.ratings.tolist() == [3.0, 3.0]


def test_a_bad_rating_names_the_line():
    with pytest.raises(DataError, match="line 2: the rating 'x' is not a number"):
        parse_ratings("1\t2\t3\n1\t3\tx\n", "u.data")
    with pytest.raises(DataError, match="line 1: expected user, item, rating"):
        parse_ratings("1\t2\n")


def test_titles_of_every_format():
    assert parse_titles("1|Toy Story (1995)|01-Jan-1995||http://x|0|1\n") == {"1": "Toy Story (1995)"}
    assert parse_titles("1::Toy Story (1995)::Animation\n") == {"1": "Toy Story (1995)"}
    csv_text = 'movieId,title,genres\n1,"American President, The (1995)",Comedy\n'
    assert parse_titles(csv_text) == {"1": "American President, The (1995)"}


def test_id_index_maps_raw_ids_both_ways():
    index, positions = IdIndex.build(np.array([30, 10, 30, 20]))
    assert positions.tolist() == [2, 0, 2, 1]
    assert index.lookup_array(np.array([20, 99])).tolist() == [1, -1]
    assert [index.lookup(v) for v in (10, "10", 10.0, "x", True, None)] == [0, 0, 0, -1, -1, -1]
    assert index.id_of(2) == 30
    strings, _ = IdIndex.build(np.array(["u1", "u2"]))
    assert strings.lookup("u2") == 1 and strings.lookup(5) == -1


def test_generated_data_looks_like_ml100k_and_writes_every_format(tmp_path):
    data = synthetic.generate(num_users=100, num_items=200, num_ratings=5000, planted_pairs=2, seed=0)
    assert 4800 <= len(data.ratings) <= 5000 and set(np.unique(data.ratings)) <= {1, 2, 3, 4, 5}
    assert np.bincount(data.users).max() > 3 * 5000 / 100  # long-tailed user activity
    for fmt in ("u.data", "ratings.dat", "ratings.csv"):
        table = parse_ratings(data.write(tmp_path / fmt, fmt).read_text())
        assert np.array_equal(table.users, data.users) and np.array_equal(table.ratings, data.ratings)
    train, test = data.split(0.2)
    assert len(train.ratings) == int(len(data.ratings) * 0.8)
    assert test.global_mean_rmse(train) > 0.8
