"""The streamed channel reader: every bad input names the channel, the file and the record or line; every
record is read exactly once per pass, in bounded memory; two hosts with unequal shares step in lockstep."""

import io
import json
import threading

import numpy as np
import pytest

from byoc_runtime.codecs import recordio_protobuf
from byoc_runtime.errors import DataError
from byoc_runtime.paths import SageMakerPaths
from byoc_runtime.training_data import PeekedStream
from byoc_runtime.training_env import Channel, TrainingEnv
from fm_algo import channel as channel_module
from fm_algo import train as train_module
from fm_algo.channel import ChannelData
from local.opt_ml import ChannelSpec, OptMlTree
from tests.training_inputs import channel_with, one_line_error

RECORDIO = "application/x-recordio-protobuf"


def dense_records(rows=10, cols=4, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    x = rng.random((rows, cols)).astype(np.float32)
    y = (rng.random(rows) < 0.5).astype(np.float32) if labels is None else np.asarray(labels, np.float32)
    return x, y, recordio_protobuf.write_dense(x, y)


def file_channel(tmp_path, files, content_type=RECORDIO, name="train"):
    return channel_with(tmp_path, files, content_type, name)


def read_all(data, pass_number=0):
    return list(data.chunks(pass_number))


def failure(data) -> str:
    return one_line_error(lambda: read_all(data))


# ---------------------------------------------------------------------------------------------- faults


def test_truncated_recordio_names_file_record_byte_and_what_remains(tmp_path):
    _, _, body = dense_records(rows=10)
    record = len(body) // 10
    channel = file_channel(tmp_path, {"part/data.rec": body[: 7 * record + 20]})
    message = failure(ChannelData(channel, 4, "binary_classifier"))
    assert message == (
        f"Channel 'train': part/data.rec is truncated: record 7 at byte {7 * record} declares "
        f"{record - 8} bytes, 12 remain"
    )


def test_truncated_header_and_garbage_after_records(tmp_path):
    _, _, body = dense_records(rows=3)
    channel = file_channel(tmp_path, {"a.rec": body + b"\x0a\x23"})
    assert f"a.rec is truncated: record 3 at byte {len(body)} has an incomplete header" in failure(
        ChannelData(channel, 4, "binary_classifier")
    )
    channel = file_channel(tmp_path / "b", {"b.rec": body + b"garbage!"})
    assert "b.rec is not valid recordIO-protobuf: Not recordIO data: bad magic 0x62726167 in record 3 at byte " in (
        failure(ChannelData(channel, 4, "binary_classifier"))
    )


def test_a_payload_that_is_not_a_record_names_record_and_byte(tmp_path):
    _, _, body = dense_records(rows=2)
    bad = recordio_protobuf._frame(b"\xff\xff\xff")  # a framed payload that is not a protobuf message
    channel = file_channel(tmp_path, {"data.rec": body + bad})
    message = failure(ChannelData(channel, 4, "binary_classifier"))
    assert message.startswith(f"Channel 'train': data.rec record 2 at byte {len(body)} is not a valid")


def test_csv_declared_as_recordio_says_both(tmp_path):
    channel = file_channel(tmp_path, {"data.csv": b"1,0.5,0.25,0,1\n0,1,1,1,1\n"})
    message = failure(ChannelData(channel, 4, "binary_classifier"))
    assert message.startswith(
        f"Channel 'train' is declared {RECORDIO} but data.csv looks like CSV text ('1,0.5,0.25,0,1'); fm reads"
    )
    # the same check runs before training starts (File mode)
    with pytest.raises(DataError, match="declared application/x-recordio-protobuf but data.csv"):
        ChannelData(channel, 4, "binary_classifier").check_files()


def test_recordio_declared_as_csv_and_csv_without_a_content_type(tmp_path):
    _, _, body = dense_records()
    channel = file_channel(tmp_path, {"data.rec": body}, content_type="text/csv")
    assert "is declared text/csv but data.rec looks like recordIO-protobuf" in failure(
        ChannelData(channel, 4, "regressor")
    )
    channel = file_channel(tmp_path / "b", {"data.csv": b"1,2,3,4,5\n"}, content_type=None)
    assert failure(ChannelData(channel, 4, "regressor")).startswith(
        "Channel 'train': data.csv looks like CSV text ('1,2,3,4,5'); fm reads application/x-recordio-protobuf "
        "(the default when a channel declares no ContentType) or text/csv"
    )


def test_unsupported_content_type(tmp_path):
    channel = file_channel(tmp_path, {"x.json": b"{}"}, content_type="application/json")
    with pytest.raises(DataError, match="has content type 'application/json'; use"):
        ChannelData(channel, 4, "regressor")


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"1,1,2,3,4\n0,1,2,3\n", "data.csv line 2 has 4 columns; expected 5: the label, then feature_dim=4 features"),
        (b"1,1,2,3,4\n\n0,1,x,3,4\n", "data.csv line 3, column 3: 'x' is not a number"),
        (b"1,1,2,3,4\n0,1,2,inf,4\n", "data.csv line 2, column 4: 'inf' is not a finite number"),
        (b"1,1,2\n", "data.csv line 1 has 3 columns; expected 5"),
        (b"1,1,2,3,4\n2,1,2,3,4\n", "data.csv line 2 has the label 2; binary_classifier labels must be 0 or 1"),
        (b"1,1,2,3,4\n0,1,\xff,3,4\n", "data.csv line 2: byte 0xff is not UTF-8 text"),
    ],
    ids=["ragged", "non-numeric", "infinite", "too-narrow", "label", "not-utf8"],
)
def test_csv_faults_name_the_line(tmp_path, body, expected):
    channel = file_channel(tmp_path, {"data.csv": body}, content_type="text/csv")
    assert failure(ChannelData(channel, 4, "binary_classifier")).startswith(f"Channel 'train': {expected}")


def test_csv_line_numbers_count_across_blocks(tmp_path, monkeypatch):
    lines = [b"0,1,2,3,4\n"] * 500 + [b"0,1,2,3\n"]
    channel = file_channel(tmp_path, {"data.csv": b"".join(lines)}, content_type="text/csv")
    real = channel_module.text_blocks
    monkeypatch.setattr(channel_module, "text_blocks", lambda stream: real(stream, block_bytes=64))
    assert "data.csv line 501 has 4 columns" in failure(ChannelData(channel, 4, "regressor"))


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: recordio_protobuf.write_dense(np.ones((3, 5), np.float32), np.zeros(3)), "record 0 at byte 0 has 5 "),
        (
            lambda: recordio_protobuf.write_dense(np.ones((3, 4), np.float32), np.array([0, 1, 3], np.float32)),
            "record 2 at byte {offset} has the label 3; binary_classifier labels must be 0 or 1",
        ),
        (lambda: recordio_protobuf.write_dense(np.ones((3, 4), np.float32)), "record 0 at byte 0 has no label"),
        (
            lambda: recordio_protobuf.write_dense(
                np.array([[1, 2, 3, 4], [1, np.nan, 3, 4]], np.float32), np.zeros(2, np.float32)
            ),
            "record 1 at byte {offset} has feature values that are NaN or infinite",
        ),
        (
            lambda: recordio_protobuf.write_sparse([([0], [1.0]), ([1], [np.inf])], np.zeros(2), num_cols=4),
            "record 1 at byte {offset} has feature values that are NaN or infinite",
        ),
    ],
    ids=["feature_dim", "label", "no-label", "nan-dense", "inf-sparse"],
)
def test_record_faults_name_record_and_byte(tmp_path, make, expected):
    body = make()
    if "{offset}" in expected:  # records of equal size: record n starts at n * size
        size = len(body) // len(list(recordio_protobuf.read_records(body)))
        number = int(expected.split()[1])
        expected = expected.format(offset=number * size)
    channel = file_channel(tmp_path, {"data.rec": body})
    message = failure(ChannelData(channel, 4, "binary_classifier"))
    assert message.startswith(f"Channel 'train': data.rec {expected}"), message


def test_feature_dim_message_names_the_hyperparameter(tmp_path):
    channel = file_channel(tmp_path, {"data.rec": dense_records(cols=5)[2]})
    assert failure(ChannelData(channel, 4, "regressor")) == (
        "Channel 'train': data.rec record 0 at byte 0 has 5 features but the hyperparameter feature_dim is 4"
    )


def test_empty_channel_no_files_and_no_records(tmp_path):
    empty = tmp_path / "train"
    empty.mkdir()
    assert failure(ChannelData(Channel("train", empty, RECORDIO), 4, "regressor")) == (
        f"Channel 'train' is empty: no files in {empty}"
    )
    channel = file_channel(tmp_path / "b", {"a.rec": b"", "b.rec": b""})
    assert failure(ChannelData(channel, 4, "regressor")) == "Channel 'train' is empty: its files hold no records"


# ---------------------------------------------------------------------------------------------- streaming


def test_every_record_once_per_pass_shuffled_in_batches(tmp_path):
    x, y, body = dense_records(rows=1000, cols=4, labels=np.arange(1000) % 2)
    x2, y2, body2 = dense_records(rows=37, cols=4, seed=1)
    channel = file_channel(tmp_path, {"a.rec": body, "b.rec": body2})
    data = ChannelData(channel, 4, "regressor")
    batches = list(data.batches(0, batch_size=64, seed=0))
    assert [len(b) for b in batches[:-1]] == [64] * (len(batches) - 1) and len(batches[-1]) <= 64
    rows = np.concatenate([b.dense() for b in batches])
    expected = np.concatenate([x, x2])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, expected.tolist()))
    assert not np.array_equal(rows, expected)  # shuffled
    assert (data.last.records, data.last.local, data.last.nnz) == (1037, 1037, int(np.count_nonzero(expected)))


def test_pipe_mode_reads_the_fifo_of_each_pass(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for number, rows in ((0, 5), (1, 7)):
        (root / f"train_{number}").write_bytes(dense_records(rows=rows)[2])
    data = ChannelData(Channel("train", root / "train", RECORDIO, "Pipe"), 4, "regressor")
    assert sum(map(len, data.chunks(0))) == 5 and sum(map(len, data.chunks(1))) == 7
    (root / "train_2").write_bytes(b"")
    with pytest.raises(DataError, match="is empty: its FIFO train_2 holds no records"):
        list(data.chunks(2))


def test_pipe_mode_names_the_fifo_in_errors(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "train_0").write_bytes(dense_records(rows=5)[2][:-3])
    data = ChannelData(Channel("train", root / "train", RECORDIO, "Pipe"), 4, "regressor")
    assert failure(data).startswith("Channel 'train': train_0 is truncated: record 4 at byte ")


def test_the_reader_runs_ahead_by_at_most_a_shuffle_window(tmp_path, monkeypatch):
    """Memory stays bounded: when the first mini-batch comes out, only about one window has been read."""
    _, _, body = dense_records(rows=20_000, cols=4)
    source = io.BytesIO(body)
    data = ChannelData(file_channel(tmp_path, {"a.rec": b""}), 4, "regressor")
    monkeypatch.setattr(data, "_sources", lambda number: iter([("a.rec", PeekedStream(source))]))
    batches = data.batches(0, batch_size=100, seed=0)
    next(batches)
    window = 100 * channel_module.SHUFFLE_BATCHES
    assert source.tell() <= len(body) * (window + 100) / 20_000
    assert sum(1 for _ in batches) + 1 == 200


def test_hosts_split_a_fully_replicated_channel_by_record(tmp_path):
    x, y, body = dense_records(rows=11, cols=4)
    channel = file_channel(tmp_path, {"a.rec": body})
    shares = [
        np.concatenate([c.dense() for c in ChannelData(channel, 4, "regressor", (r, 2)).chunks()]) for r in (0, 1)
    ]
    assert np.array_equal(shares[0], x[0::2]) and np.array_equal(shares[1], x[1::2])
    text = "\n".join(",".join(map(str, [v, *row])) for v, row in zip(y, x, strict=True)).encode()
    csv = file_channel(tmp_path / "csv", {"a.csv": text}, content_type="text/csv")
    share = np.concatenate([c.dense() for c in ChannelData(csv, 4, "regressor", (1, 2)).chunks()])
    assert np.allclose(share, x[1::2])


class ThreadReducer:
    """An allreduce (sum) between threads standing in for hosts, counting the steps each host took."""

    def __init__(self, hosts):
        self.barrier = threading.Barrier(hosts)
        self.slots = [None] * hosts
        self.calls = [0] * hosts

    def for_host(self, rank):
        parent = self

        class Host:
            def allreduce(self, vector):
                parent.slots[rank] = vector
                parent.calls[rank] += 1
                parent.barrier.wait()
                total = np.sum(parent.slots, axis=0)
                parent.barrier.wait()
                return total

            def close(self):
                pass

        return Host()


def test_two_hosts_with_unequal_shares_step_in_lockstep(tmp_path, monkeypatch):
    """ShardedByS3Key files of 700 and 250 records: both hosts run the same number of allreduces and end
    with identical parameters; the epoch's steps are those of the larger share (+1 to agree it is over)."""
    hp = {"feature_dim": 4, "num_factors": 2, "predictor_type": "regressor", "epochs": 2, "mini_batch_size": 100}
    reducer = ThreadReducer(2)
    envs = []
    for rank, rows in enumerate((700, 250)):
        source = tmp_path / f"src{rank}.rec"
        source.write_bytes(dense_records(rows=rows, seed=rank)[2])
        root = tmp_path / f"algo-{rank + 1}"
        OptMlTree.create(root, hp, {"train": ChannelSpec(source, RECORDIO)}, ["algo-1", "algo-2"], f"algo-{rank + 1}")
        config = json.loads((root / "input" / "config" / "inputdataconfig.json").read_text())
        config["train"]["S3DistributionType"] = "ShardedByS3Key"
        (root / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(config))
        envs.append(TrainingEnv.load(SageMakerPaths(root)))
    monkeypatch.setattr(train_module.distributed, "start_mxnet_parameter_servers", lambda env: [])
    monkeypatch.setattr(train_module.dist, "reducer_for", lambda env, d, k: reducer.for_host(env.host_rank))
    trainers = {}
    real = train_module.FMTrainer

    def remember(hp, reducer):
        trainer = real(hp, reducer)
        trainers[id(reducer)] = trainer
        return trainer

    monkeypatch.setattr(train_module, "FMTrainer", remember)
    errors = []

    def run(env):
        try:
            train_module.train(env)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
            reducer.barrier.abort()

    threads = [threading.Thread(target=run, args=(env,)) for env in envs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert reducer.calls == [2 * (7 + 1)] * 2
    first, second = trainers.values()
    assert first.steps == second.steps == 14
    assert all(np.array_equal(first.params[g], second.params[g]) for g in first.params)
    metrics = [json.loads((env.paths.output_data_dir / "metrics.json").read_text()) for env in envs]
    assert [m["train:records"] for m in metrics] == [700, 250]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_values_are_read_in_place_and_equal_the_repeated_field(tmp_path, dtype):
    x = (np.random.default_rng(0).random((5, 300)) * 100).astype(dtype)
    x[1, ::3] = 0
    sparse = [(np.flatnonzero(row), row[np.flatnonzero(row)]) for row in x]
    for body in (
        recordio_protobuf.write_dense(x, np.zeros(5)),
        recordio_protobuf.write_sparse(sparse, np.zeros(5), num_cols=300),
    ):
        for record in recordio_protobuf.read_records(body):
            tensor, kind = channel_module._tensor(record.features["values"], "w", 0, 0, "feature 'values'")
            values = channel_module._values(tensor, kind, len(tensor.values))
            assert values.dtype == np.float32 and np.array_equal(values, np.array(tensor.values, np.float32))
