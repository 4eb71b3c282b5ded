"""Factorization machines: the course's MNIST "is it a 0" classifier on the shipped 3,000-image sample
(dense recordIO-protobuf), queried with the built-in algorithm's JSON (dense and sparse), CSV and recordIO."""

from pathlib import Path

import numpy as np

from byoc_runtime.codecs import recordio_protobuf
from fm_client import mnist
from local.demo import Demo, Request

RECORDIO = "application/x-recordio-protobuf"


def make(workdir: Path) -> Demo:
    x, y = mnist.load_binary(mnist.SAMPLE_DIR, "train")
    tx, ty = mnist.load_binary(mnist.SAMPLE_DIR, "test")
    for name, features, labels in (("train", x, y), ("test", tx, ty)):
        (workdir / name).mkdir()
        (workdir / name / "data.rec").write_bytes(recordio_protobuf.write_dense(features, labels))
    zero, other = int(np.flatnonzero(ty == 1)[0]), int(np.flatnonzero(ty == 0)[0])
    rows = tx[[zero, other]]
    keys = np.flatnonzero(rows[0])
    sparse = {"keys": keys.tolist(), "shape": [784], "values": rows[0][keys].tolist()}
    np.savetxt(workdir / "batch.csv", tx[:20], delimiter=",", fmt="%.4g")
    return Demo(
        family="fm",
        inputs={"train": (workdir / "train", RECORDIO), "test": (workdir / "test", RECORDIO)},
        hyperparameters=dict(mnist.SAMPLE_HYPERPARAMETERS),
        requests=[
            Request("JSON dense: a 0, then a non-0", {"instances": [{"features": r} for r in rows.tolist()]}),
            Request("JSON sparse: the 0", {"instances": [{"data": {"features": sparse}}]}),
            Request("CSV: the non-0", ",".join(f"{v:.4g}" for v in rows[1]), content_type="text/csv"),
            Request("recordIO-protobuf: both", recordio_protobuf.write_dense(rows), content_type=RECORDIO),
        ],
        metric_names=["test:binary_classification_accuracy", "test:binary_f_1.000", "train:throughput"],
        transform=Request("20 CSV rows -> JSON Lines", workdir / "batch.csv", "text/csv", "application/jsonlines"),
    )
