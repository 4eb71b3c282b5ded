"""The ncf-tf image, trained and served by docker: data prep, 1-host training to an HR@10 far above the
popularity baseline, TF-Serving-style requests, 4xx for bad ones, 2 hosts in SDK local mode on the course's
npy layout, and a user script in script mode. TensorFlow starts slowly: few, well-chosen containers."""

from __future__ import annotations

import json
import tarfile

import docker
import numpy as np
import pytest

from byoc_runtime.checkpoints import CheckpointStore
from local.opt_ml import ChannelSpec
from ncf_tf import synthetic
from tests.images import build_image

pytestmark = pytest.mark.docker
N_USERS, N_ITEMS = 200, 300  # synthetic.planted_ratings() defaults
FAST = {"epochs": 6, "pretrain": False, "batch_size": 128, "eval_negatives": 50}


@pytest.fixture(scope="module")
def image():
    return build_image("ncf-tf")


@pytest.fixture(scope="module")
def ratings_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ncf-ratings")
    synthetic.write(synthetic.planted_ratings(), directory, "u.data")
    return directory


@pytest.fixture(scope="module")
def trained(harness, image, ratings_dir):
    result = harness.train(image, FAST, {"training": ChannelSpec(ratings_dir)})
    assert result.ok, result.logs()
    return result


def _metrics(result):
    return json.loads((result.output_data_dir / "metrics.json").read_text())


def test_one_host_beats_popularity_and_saves_a_tf_serving_model(trained):
    metrics = _metrics(trained)
    assert metrics["hr_at_10"] > metrics["popularity_hr_at_10"] + 0.3, metrics
    assert metrics["ndcg_at_10"] > metrics["popularity_ndcg_at_10"] and metrics["test_auc"] > 0.8
    assert "#metric: hr_at_10=" in trained.master.logs and "#metric: test_auc=" in trained.master.logs
    assert (trained.model_dir / "000000001" / "saved_model.pb").exists()
    assert (trained.model_dir / "000000001" / "variables").is_dir()
    assert (trained.model_dir / "ncf" / "mappings.npz").exists()


def test_bad_hyperparameter_names_it_in_the_failure_file(harness, image, ratings_dir, dump_logs_on_failure):
    result = harness.train(image, {"layers": "64,x"}, {"training": ChannelSpec(ratings_dir)})
    dump_logs_on_failure(result)
    assert result.master.exit_code != 0
    assert result.master.failure.startswith("Hyperparameter 'layers' is invalid")


@pytest.fixture(scope="module")
def course_layout(image, ratings_dir, tmp_path_factory):
    """The prep CLI inside the image: ratings -> train.npy/test.npy (no TensorFlow needed for this step)."""
    out = tmp_path_factory.mktemp("ncf-course-layout")
    client = docker.from_env()
    logs = client.containers.run(
        image,
        ["python", "-m", "ncf_tf.prep", "--input", "/data", "--output", "/out", "--holdout", "1"],
        entrypoint=[],
        remove=True,
        user=f"{__import__('os').getuid()}",
        volumes={str(ratings_dir): {"bind": "/data", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"}},
    ).decode()
    assert f"users={N_USERS} items={N_ITEMS}" in logs
    return out


def test_prep_cli_writes_the_course_layout(course_layout):
    train, test = np.load(course_layout / "train.npy"), np.load(course_layout / "test.npy")
    assert train.shape[1] == test.shape[1] == 3
    assert (train[:, 2] == 0).sum() == 5 * (train[:, 2] == 1).sum()  # 5 negatives per positive, as the course
    assert (test[:, 2] == 1).sum() == N_USERS  # leave-one-out


@pytest.fixture(scope="module")
def endpoint(harness, image, trained):
    with harness.serve(image, trained.model_archive) as endpoint:
        yield endpoint
        endpoint.session.close()  # an idle keep-alive connection would hold gunicorn's graceful stop


def test_instances_and_inputs_forms_agree(endpoint):
    instances = endpoint.invoke(json.dumps({"instances": [{"input_1": 0, "input_2": 5}, {"input_1": 3, "input_2": 7}]}))
    inputs = endpoint.invoke(json.dumps({"inputs": {"input_1": [0, 3], "input_2": [5, 7]}}))
    assert instances.status_code == inputs.status_code == 200, instances.text
    predictions = instances.json()["predictions"]
    assert np.array(predictions).shape == (2, 1) and 0 < predictions[0][0] < 1
    assert inputs.json() == instances.json()
    # The course's client: one-hot vectors; and raw MovieLens ids (index 0 is user id 1, item index 5 is id 6).
    one_hot = {"input_1": np.eye(N_USERS)[[0, 3]].tolist(), "input_2": np.eye(N_ITEMS)[[5, 7]].tolist()}
    assert endpoint.invoke(json.dumps({"inputs": one_hot})).json() == instances.json()
    raw = endpoint.invoke(json.dumps({"instances": [{"user_id": 1, "item_id": 6}, {"user_id": 4, "item_id": 8}]}))
    assert raw.json() == instances.json()


def test_tf_serving_semantics_on_our_own_model(endpoint):
    """Our trainer's model is a SavedModel like any other: named "model" (TF Serving's layout at the top), version 1,
    its serving_default takes input_1/input_2 indices; the NCF forms stay ours, the rest is TF Serving's."""
    url, body = f"{endpoint.url}/invocations", json.dumps({"instances": [{"input_1": 0, "input_2": 5}]})

    def post(data, attributes):
        headers = {"Content-Type": "application/json", "X-Amzn-SageMaker-Custom-Attributes": attributes}
        return endpoint.session.post(url, data=data, headers=headers, timeout=60)

    plain = endpoint.invoke(body).json()
    assert post(body, "tfs-model-name=model,tfs-model-version=1").json() == plain
    raw = json.dumps({"instances": [{"user_id": 1, "item_id": 6}]})  # raw ids: the NCF extras still apply
    assert post(raw, "tfs-model-version=000000001").json() == plain
    signature = json.dumps({"signature_name": "serving_default", "inputs": {"input_1": [0], "input_2": [5]}})
    assert endpoint.invoke(signature).json() == plain
    classify = post(json.dumps({"examples": [{"input_1": 0}]}), "tfs-method=classify")
    assert classify.status_code == 400 and "Expected classification signature" in classify.json()["error"]
    assert post(body, "tfs-model-version=2").status_code == 404
    other = endpoint.invoke(json.dumps({"signature_name": "nope", "instances": [{"input_1": 0, "input_2": 5}]}))
    assert other.status_code == 400 and 'Serving signature name: "nope" not found' in other.json()["error"]


def test_top_k_recommendation(endpoint):
    response = endpoint.invoke(json.dumps({"instances": [{"user_id": 7, "top_k": 5}]}))
    assert response.status_code == 200, response.text
    answer = response.json()["predictions"][0]
    assert answer["user_id"] == 7 and len(answer["item_ids"]) == 5
    assert answer["scores"] == sorted(answer["scores"], reverse=True)


def test_large_batch_in_one_request(endpoint):
    rng = np.random.default_rng(0)
    pairs = np.c_[rng.integers(0, N_USERS, 50_000), rng.integers(0, N_ITEMS, 50_000)]
    response = endpoint.invoke(json.dumps({"instances": pairs.tolist()}))
    assert response.status_code == 200 and len(response.json()["predictions"]) == 50_000


@pytest.mark.parametrize(
    "body, status",
    [
        ('{"instances": [{"input_1": 0, "input_2": 99999}]}', 400),  # index out of range
        ('{"instances": [{"input_1": [1, 1], "input_2": 0}]}', 400),  # wrong one-hot length
        (json.dumps({"inputs": {"input_1": [[0.5] * N_USERS], "input_2": [0]}}), 400),  # not one-hot
        ('{"inputs": {"input_1": [0, 1], "input_2": [0]}}', 400),  # wrong shape
        ('{"instances": [{"user_id": 123456, "item_id": 1}]}', 400),  # unknown id
        ('{"instances": [[0, 1, 2]]}', 400),
        ("{not json", 400),
    ],
)
def test_bad_requests_are_4xx_json(endpoint, body, status):
    response = endpoint.invoke(body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "error_type"} and "Traceback" not in response.text


def test_oversized_request_is_413(endpoint):
    body = json.dumps({"instances": [[1, 2]] * (7 * 1024 * 1024 // 7)})
    response = endpoint.invoke(body)
    assert response.status_code == 413 and response.json()["error_type"] == "PayloadTooLarge"


def _output_metrics(run) -> dict:
    with tarfile.open(run.workdir / "output" / "output.tar.gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("metrics.json"))
        return json.load(tar.extractfile(member))


def test_two_hosts_in_local_mode_on_the_course_layout(image, course_layout):
    from local.sdk import local_run

    with local_run(image) as run:
        model_data = run.fit({"training": course_layout}, {**FAST, "epochs": 4}, instance_count=2)
        metrics = _output_metrics(run)
        with tarfile.open(model_data.removeprefix("file://")) as tar:
            names = tar.getnames()
    assert any(n.endswith("000000001/saved_model.pb") for n in names), names
    assert metrics["hr_at_10"] > metrics["popularity_hr_at_10"] + 0.3, metrics


USER_SCRIPT = """
import argparse, json, os
import numpy as np
import tensorflow as tf
from ncf_tf import artifacts, model

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
args = parser.parse_args()
train = np.load(os.path.join(os.environ["SM_CHANNEL_TRAINING"], "train.npy"))
n_users, n_items = int(train[:, 0].max()) + 1, int(train[:, 1].max()) + 1
net = model.build("neumf", n_users, n_items, 8, [16, 8])
net.compile("adam", "binary_crossentropy")
data = {"input_1": train[:, 0].astype("int32"), "input_2": train[:, 1].astype("int32")}
history = net.fit(data, train[:, 2].astype("float32"), epochs=args.epochs, batch_size=256, verbose=0)
net.save(os.path.join(os.environ["SM_MODEL_DIR"], artifacts.MODEL_VERSION), save_format="tf")
report = {"hosts": json.loads(os.environ["SM_HOSTS"]), "host": os.environ["SM_CURRENT_HOST"],
          "loss": history.history["loss"], "keras": tf.keras.Model.__module__}
json.dump(report, open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "script.json"), "w"))
"""


def test_user_script_in_script_mode(image, course_layout, tmp_path):
    from local.sdk import local_run

    code = tmp_path / "code"
    code.mkdir()
    (code / "my_ncf.py").write_text(USER_SCRIPT)
    with local_run(image) as run:
        model_data = run.fit({"training": course_layout}, {"epochs": 2}, entry_point="my_ncf.py", source_dir=code)
        with tarfile.open(run.workdir / "output" / "output.tar.gz") as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("script.json"))
            report = json.load(tar.extractfile(member))
        with tarfile.open(model_data.removeprefix("file://")) as tar:
            assert any(n.endswith("000000001/saved_model.pb") for n in tar.getnames())
    assert len(report["loss"]) == 2 and report["loss"][1] < report["loss"][0]
    assert report["hosts"] == [report["host"]] and report["keras"].startswith("tf_keras")


def test_two_hosts_with_parameter_servers(harness, image, ratings_dir, dump_logs_on_failure):
    """The course's distribution={"parameter_server": {"enabled": True}}: the chief trains, every host serves a
    ps task, the other host a worker task; all exit 0 once the chief is done; only the chief writes the model."""
    hyperparameters = {**FAST, "epochs": 4, "sagemaker_parameter_server_enabled": True}
    result = harness.train(image, hyperparameters, {"training": ChannelSpec(ratings_dir)}, instance_count=2)
    dump_logs_on_failure(result)
    assert result.ok, result.logs()
    assert "ParameterServerStrategy" in result.master.logs
    assert "worker task 0: the chief has finished" in result.hosts[1].logs
    metrics = _metrics(result)
    assert metrics["hr_at_10"] > metrics["popularity_hr_at_10"] + 0.3, metrics
    assert (result.model_dir / "000000001" / "saved_model.pb").exists()
    assert not (result.hosts[1].tree.root / "model" / "000000001").exists()


def test_sigterm_checkpoints_and_the_next_job_resumes(harness, image, ratings_dir, tmp_path, dump_logs_on_failure):
    """In the real image: SIGTERM mid-training stops at a checkpoint with a failure file; a new job with the same
    checkpoint directory resumes after the saved epoch instead of starting over."""
    import threading
    import time

    def stop_after_first_epoch(containers):
        def watch():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if b"epoch=1" in containers[0].logs():
                    containers[0].kill(signal="SIGTERM")
                    return
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()

    hyperparameters = {**FAST, "epochs": 200}
    stopped = harness.train(
        image, hyperparameters, {"training": ChannelSpec(ratings_dir)}, checkpoint_dir=tmp_path,
        on_started=stop_after_first_epoch,
    )  # fmt: skip
    dump_logs_on_failure(stopped)
    assert stopped.master.exit_code != 0 and "SIGTERM" in stopped.master.failure
    saved = CheckpointStore(tmp_path / "algo-1", "neumf").latest().step
    assert 1 <= saved < 200
    resumed = harness.train(
        image, {**FAST, "epochs": saved + 1}, {"training": ChannelSpec(ratings_dir)}, checkpoint_dir=tmp_path
    )
    dump_logs_on_failure(resumed)
    assert resumed.ok, resumed.logs()
    assert f"resuming neumf from the checkpoint after epoch {saved}" in resumed.master.logs
    assert f"epoch={saved + 1}" in resumed.master.logs and "epoch=1\n" not in resumed.master.logs
