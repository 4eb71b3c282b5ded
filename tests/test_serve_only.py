"""Serve-only images (./build.sh build FAMILY --serve: byoc-<family>:<version>-cpu-serve, on byoc-base, no
training framework): per family, one job trains in the full image; its model.tar.gz is served by the full
image and by the serve-only image, which get the same requests; the answers must be equal, numbers to 1e-5.
Also: the serve-only images stay within their size goals and start to the first /ping 200 quickly, refuse
`train` naming the full image, and answer 501 for what only the framework can do (ncf-tf: classify)."""

from __future__ import annotations

import gzip
import io
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from local.opt_ml import ChannelSpec
from tests.images import ROOT, build_image

pytestmark = pytest.mark.docker
TOLERANCE = 1e-5
SIZE_GOALS_MB = {"mxnet-mf": 300, "fm": 300, "ncf-tf": 450, "gluon-cnn": 450}
COLD_START_LIMIT = 3.0  # seconds; the goal is 1 s (README's figures), this bound leaves room for a loaded CI machine


def _compare(full, serve, where="answer"):
    """Equal structure and strings; numbers equal to TOLERANCE. Returns the largest difference seen."""
    if isinstance(full, dict):
        assert isinstance(serve, dict) and set(full) == set(serve), f"{where}: keys {sorted(full)} vs {serve}"
        return max([_compare(full[k], serve[k], f"{where}.{k}") for k in full], default=0.0)
    if isinstance(full, list):
        assert isinstance(serve, list) and len(full) == len(serve), f"{where}: {full} vs {serve}"
        return max(
            [_compare(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(full, serve, strict=True))], default=0.0
        )
    if isinstance(full, float) or isinstance(serve, float):
        assert isinstance(serve, (int, float)) and math.isclose(full, serve, rel_tol=0, abs_tol=TOLERANCE), (
            f"{where}: {full} vs {serve}"
        )
        return abs(full - serve)
    assert full == serve, f"{where}: {full!r} vs {serve!r}"
    return 0.0


def _answer(response):
    assert response.status_code == 200, response.text
    kind = response.headers.get("Content-Type", "").split(";")[0]
    if kind == "application/x-npy":
        return np.load(io.BytesIO(response.content), allow_pickle=False).tolist()
    if kind == "application/jsonlines":
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]
    if kind == "text/csv":
        return [[float(v) for v in line.split(",")] for line in response.text.splitlines()]
    return response.json()


def _image_size_mb(image: str) -> float:
    size = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    return int(size) / 1e6


def _serve_both(harness, family, archive, requests, dump_logs_on_failure, compare=_compare):
    """Each request to the full and the serve-only image; the answers compared. Returns the full image's."""
    full_image, serve_image = build_image(family), build_image(family, serve=True)
    assert _image_size_mb(serve_image) <= SIZE_GOALS_MB[family]
    answers = {}
    ready = None
    for image in (full_image, serve_image):
        with harness.serve(image, archive) as endpoint:
            dump_logs_on_failure(endpoint)
            answers[image] = [_answer(endpoint.invoke(*request)) for request in requests]
            if image == serve_image:
                ready = endpoint.ready_seconds
            endpoint.session.close()  # an idle keep-alive connection would hold gunicorn's graceful stop
    worst = max(compare(a, b, f"request {i}") for i, (a, b) in enumerate(zip(*answers.values(), strict=True)))
    print(f"{family}: {len(requests)} requests, largest difference {worst:.2e}, serve-only cold start {ready:.2f} s")
    assert ready is not None and ready <= COLD_START_LIMIT
    return answers[full_image]


# ------------------------------------------------------------------ mxnet-mf
def test_mxnet_mf(harness, tmp_path, dump_logs_on_failure):
    from mxnet_mf import synthetic

    ratings = synthetic.generate(num_users=60, num_items=80, num_ratings=2000, rank=4, seed=3)
    ratings.write(tmp_path / "train" / "ua.base", "u.data")
    ratings.write_titles(tmp_path / "items" / "u.item", "u.item")
    hp = {"model": "mf", "num_factors": 8, "epochs": 2, "seed": 1}
    result = harness.train(build_image("mxnet-mf"), hp, {n: ChannelSpec(tmp_path / n) for n in ("train", "items")})
    assert result.ok, result.logs()
    requests = [
        (json.dumps({"instances": [{"user_id": 1, "item_id": 2}, {"user_id": 5, "item_id": 9}]}),),
        (json.dumps({"instances": [{"in0": [3], "in1": [4]}, {"in0": [7]}]}),),
        (json.dumps({"instances": [{"user_id": 2, "k": 5}, {"item_id": 3, "k": 4}]}),),
        ("1,2\n3,4\n", "text/csv", "text/csv"),
        ('{"user_id": 1, "item_id": 2}\n{"user_id": 4, "k": 3}\n', "application/jsonlines", "application/jsonlines"),
    ]
    _serve_both(harness, "mxnet-mf", result.model_archive, requests, dump_logs_on_failure)


# ------------------------------------------------------------------ fm
def test_fm(harness, tmp_path, dump_logs_on_failure):
    from byoc_runtime.codecs import recordio_protobuf
    from fm_client import mnist

    x, y = mnist.load_binary(mnist.SAMPLE_DIR, "train")
    (tmp_path / "train.rec").write_bytes(recordio_protobuf.write_dense(x[:1000], y[:1000]))
    hp = {**mnist.SAMPLE_HYPERPARAMETERS, "epochs": 1}
    channels = {"train": ChannelSpec(tmp_path / "train.rec", "application/x-recordio-protobuf")}
    result = harness.train(build_image("fm"), hp, channels)
    assert result.ok, result.logs()
    rows = x[1000:1020]
    dense = json.dumps({"instances": [{"features": r} for r in rows.tolist()]})
    requests = [
        (dense,),
        (recordio_protobuf.write_dense(rows.astype(np.float32)), "application/x-recordio-protobuf"),
        (dense, "application/json", "application/jsonlines"),
    ]
    full = _serve_both(harness, "fm", result.model_archive, requests, dump_logs_on_failure)

    # A model that is only the built-in's archive (MXNet's NDArray format), read without MXNet.
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    (builtin / "model_algo-1").write_bytes((result.model_dir / "model_algo-1").read_bytes())
    with harness.serve(build_image("fm", serve=True), builtin) as endpoint:
        _compare(full[0], _answer(endpoint.invoke(dense)))
        endpoint.session.close()


# ------------------------------------------------------------------ ncf-tf
def _ncf_compare(full, serve, where="answer"):
    """Top-k lists may order items whose scores tie (within 1e-5) differently: compare their scores then."""
    if isinstance(full, dict) and "item_ids" in full and full.get("item_ids") != serve.get("item_ids"):
        assert np.allclose(full["scores"], serve["scores"], rtol=0, atol=TOLERANCE), where
        return float(np.max(np.abs(np.subtract(full["scores"], serve["scores"]))))
    if isinstance(full, dict):
        return max([_ncf_compare(full[k], serve[k], f"{where}.{k}") for k in full], default=0.0)
    if isinstance(full, list) and full and isinstance(full[0], dict):
        assert len(full) == len(serve), where
        return max(_ncf_compare(a, b, where) for a, b in zip(full, serve, strict=True))
    return _compare(full, serve, where)


def test_ncf_tf(harness, tmp_path, dump_logs_on_failure):
    from ncf_tf import synthetic

    synthetic.write(synthetic.planted_ratings(), tmp_path, "u.data")
    hp = {"epochs": 1, "pretrain": False, "batch_size": 512, "eval_negatives": 20}
    result = harness.train(build_image("ncf-tf"), hp, {"training": ChannelSpec(tmp_path)})
    assert result.ok, result.logs()
    assert (result.model_dir / "ncf" / "weights.npz").is_file()
    users = list(range(0, 200, 7))
    items = [(11 * u + 3) % 300 for u in users]
    requests = [
        (json.dumps({"instances": [{"input_1": u, "input_2": i} for u, i in zip(users, items, strict=True)]}),),
        (json.dumps({"inputs": {"input_1": users, "input_2": items}}),),
        (json.dumps({"instances": [{"user_id": 1, "item_id": 6}, {"user_id": 4, "item_id": 8}]}),),
        (json.dumps({"instances": [{"user_id": 1, "top_k": 10}, {"user_id": 9, "top_k": 10}]}),),
        ("".join(f"{u},{i}\n" for u, i in zip(users, items, strict=True)), "text/csv", "text/csv"),
    ]
    _serve_both(harness, "ncf-tf", result.model_archive, requests, dump_logs_on_failure, _ncf_compare)

    # What only TensorFlow can do: 501 naming the full image; the NCF requests keep working beside it.
    with harness.serve(build_image("ncf-tf", serve=True), result.model_archive) as endpoint:
        url = f"{endpoint.url}/invocations"
        headers = {"Content-Type": "application/json", "X-Amzn-SageMaker-Custom-Attributes": "tfs-method=classify"}
        refused = endpoint.session.post(url, data=json.dumps({"examples": [{"x": 1.0}]}), headers=headers, timeout=30)
        assert refused.status_code == 501, refused.text
        assert refused.json()["error_type"] == "NeedsFramework" and "byoc-ncf-tf:" in refused.json()["error"]
        elsewhere = {**headers, "X-Amzn-SageMaker-Custom-Attributes": "tfs-model-name=x"}
        missing = endpoint.session.post(url, data=requests[0][0], headers=elsewhere, timeout=30)
        assert missing.status_code == 404, missing.text
        endpoint.session.close()


# ------------------------------------------------------------------ gluon-cnn
def test_gluon_cnn(harness, tmp_path, dump_logs_on_failure):
    sample = ROOT / "containers" / "gluon-cnn" / "sample" / "mnist"
    (tmp_path / "train").mkdir()
    for source in sample.glob("train-*"):
        (tmp_path / "train" / source.name).write_bytes(source.read_bytes())
    result = harness.train(
        build_image("gluon-cnn"), {"epochs": 1, "log_interval": 0}, {"train": ChannelSpec(tmp_path / "train")}
    )
    assert result.ok, result.logs()
    images = np.frombuffer(gzip.open(sample / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(
        -1, 28, 28
    )
    batch = images[:64]
    npy = io.BytesIO()
    np.save(npy, batch)
    requests = [
        (json.dumps({"instances": (batch / 255.0).tolist()}),),
        (json.dumps({"instances": batch[:8].tolist()}), "application/json", "application/json; verbose=1"),
        (npy.getvalue(), "application/x-npy", "application/x-npy; verbose=1"),
        (npy.getvalue(), "application/x-npy", "application/x-npy"),
    ]
    _serve_both(harness, "gluon-cnn", result.model_archive, requests, dump_logs_on_failure)


def test_serve_only_image_refuses_to_train_naming_the_full_image(harness, tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "ua.base").write_text("1\t1\t5\t0\n")
    result = harness.train(build_image("mxnet-mf", serve=True), {}, {"train": ChannelSpec(tmp_path / "train")})
    assert result.master.exit_code != 0
    assert result.master.failure.startswith("This is a serve-only image") and "byoc-mxnet-mf:" in result.master.failure


def test_build_sh_lists_the_serve_only_images():
    build_image("fm", serve=True)
    listing = subprocess.run([str(ROOT / "build.sh"), "list"], capture_output=True, text=True, check=True).stdout
    assert "cpu-serve" in listing and "byoc-fm" in listing
    assert Path(ROOT / "containers" / "fm" / "Dockerfile.serve").is_file()
