"""The TensorFlow NCF course's flow against the ncf-tf image, in SageMaker SDK local mode: a script-mode training
job through `sagemaker.tensorflow.TensorFlow(entry_point=..., image_uri=<ncf-tf>,
distribution={"parameter_server": {"enabled": True}})` whose script (written here in the course's style: one-hot
Dense inputs input_1/input_2, a Python generator and fit_generator, model.save(SM_MODEL_DIR/000000001)) saves a
plain Keras SavedModel; then `estimator.deploy()`, and the TensorFlowPredictor's answers to the course client's
{"instances": [{"input_1": one_hot_user, "input_2": one_hot_item}, ...]} equal the script's own model.predict on
the same inputs. Also the predictor's model_name/model_version and classify() (custom attributes)."""

from __future__ import annotations

import json
import tarfile
import time

import numpy as np
import pytest

from tests.images import build_image

pytestmark = pytest.mark.docker
N_USERS, N_ITEMS = 12, 20
QUERIES = [(0, 3), (11, 19), (5, 0), (7, 7), (2, 15)]  # (user, item) pairs the script predicts and we ask for
CLOSE = {"rtol": 1e-5, "atol": 1e-6}  # the signature and Keras' predict may differ in the last float32 bit

COURSE_STYLE_SCRIPT = """
import argparse, json, os
import numpy as np
import tensorflow as tf


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_dir", type=str)  # passed by the TensorFlow estimator
    parser.add_argument("--sm-model-dir", type=str, default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", type=str, default=os.environ.get("SM_CHANNEL_TRAINING"))
    parser.add_argument("--hosts", type=list, default=json.loads(os.environ.get("SM_HOSTS")))
    parser.add_argument("--current-host", type=str, default=os.environ.get("SM_CURRENT_HOST"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--n_user", type=int)
    parser.add_argument("--n_item", type=int)
    parser.add_argument("--learning_rate", type=float, default=0.01)
    return parser.parse_known_args()


def load_training_data(base_dir):
    rows = np.load(os.path.join(base_dir, "train.npy"))
    return rows[:, 0], rows[:, 1], rows[:, 2].astype("float32")


def batch_generator(users, items, labels, batch_size, n_batch, n_user, n_item):
    index = np.arange(len(users))
    counter = 0
    while True:
        batch = index[batch_size * counter : batch_size * (counter + 1)]
        yield [tf.one_hot(users[batch], depth=n_user), tf.one_hot(items[batch], depth=n_item)], labels[batch]
        counter += 1
        if counter == n_batch:
            np.random.shuffle(index)
            counter = 0


def ncf_model(n_user, n_item, dim=8, layers=(16, 8)):
    user = tf.keras.layers.Input(shape=(n_user,), dtype="float32", name="input_1")
    item = tf.keras.layers.Input(shape=(n_item,), dtype="float32", name="input_2")
    gmf = tf.keras.layers.Multiply()([tf.keras.layers.Dense(dim)(user), tf.keras.layers.Dense(dim)(item)])
    mlp = tf.keras.layers.Concatenate()([tf.keras.layers.Dense(layers[0] // 2)(user),
                                         tf.keras.layers.Dense(layers[0] // 2)(item)])
    for width in layers[1:]:
        mlp = tf.keras.layers.Dense(width, activation="relu")(mlp)
    output = tf.keras.layers.Dense(1, activation="sigmoid")(tf.keras.layers.Concatenate()([gmf, mlp]))
    return tf.keras.Model(inputs=[user, item], outputs=output)


if __name__ == "__main__":
    args, _ = parse_args()
    tf.keras.utils.set_random_seed(0)
    users, items, labels = load_training_data(args.train)
    model = ncf_model(args.n_user, args.n_item)
    model.compile(optimizer=tf.keras.optimizers.Adam(args.learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"])
    steps = int(np.ceil(len(users) / args.batch_size))
    generator = batch_generator(users, items, labels, args.batch_size, steps, args.n_user, args.n_item)
    history = model.fit_generator(generator, steps_per_epoch=steps, epochs=args.epochs, verbose=2)
    if args.current_host == args.hosts[0]:
        model.save(os.path.join(args.sm_model_dir, "000000001"))
        queries = json.load(open(os.path.join(os.path.dirname(__file__), "queries.json")))
        one_hot = [np.eye(args.n_user, dtype="float32")[[u for u, _ in queries]],
                   np.eye(args.n_item, dtype="float32")[[i for _, i in queries]]]
        report = {"predictions": model.predict(one_hot, verbose=0).tolist(), "loss": history.history["loss"],
                  "keras": tf.keras.Model.__module__}
        with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "expected.json"), "w") as f:
            json.dump(report, f)
"""


@pytest.fixture(scope="module")
def image():
    return build_image("ncf-tf")


@pytest.fixture(scope="module")
def training_data(tmp_path_factory):
    """The course's train.npy: user, item, label rows; each user likes the items of its own residue class."""
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, N_USERS, 1500), rng.integers(0, N_ITEMS, 1500)
    labels = ((users % 3) == (items % 3)).astype(np.int64)
    directory = tmp_path_factory.mktemp("ncf-course-data")
    np.save(directory / "train.npy", np.c_[users, items, labels])
    return directory


def _one_hot_instances() -> list[dict]:
    return [{"input_1": np.eye(N_USERS)[u].tolist(), "input_2": np.eye(N_ITEMS)[i].tolist()} for u, i in QUERIES]


def test_course_script_mode_job_deploys_and_answers_as_model_predict(image, training_data, tmp_path):
    from sagemaker.tensorflow import TensorFlow, TensorFlowPredictor

    from local.sdk import DUMMY_ROLE, file_uri, local_run

    code = tmp_path / "code"
    code.mkdir()
    (code / "ncf.py").write_text(COURSE_STYLE_SCRIPT)
    (code / "queries.json").write_text(json.dumps(QUERIES))
    with local_run(image) as run:
        estimator = TensorFlow(
            entry_point="ncf.py",
            source_dir=str(code),
            role=DUMMY_ROLE,
            image_uri=image,
            instance_count=1,
            instance_type="local",
            distribution={"parameter_server": {"enabled": True}},
            hyperparameters={"epochs": 3, "batch_size": 64, "n_user": N_USERS, "n_item": N_ITEMS},
            output_path=file_uri(run.workdir / "output"),
            sagemaker_session=run.session,
            disable_profiler=True,
            debugger_hook_config=False,
        )
        estimator.fit({"training": file_uri(training_data)})
        with tarfile.open(estimator.model_data.removeprefix("file://")) as tar:
            names = tar.getnames()
        with tarfile.open(run.workdir / "output" / "output.tar.gz") as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("expected.json"))
            report = json.load(tar.extractfile(member))
        assert any(n.endswith("000000001/saved_model.pb") for n in names), names
        assert not any("mappings.npz" in n for n in names)  # a plain Keras SavedModel: none of our extras
        assert report["keras"].startswith("tf_keras") and len(report["loss"]) == 3

        # code_location: where TensorFlowModel would put an inference.py (there is none); without it the SDK asks
        # AWS for the account's default bucket, which this offline test has not got
        predictor = estimator.deploy(
            initial_instance_count=1, instance_type="local", wait=False, code_location="s3://byoc-local-mode/code"
        )
        try:
            assert isinstance(predictor, TensorFlowPredictor)
            _wait_in_service(run.session, predictor.endpoint_name)
            answer = predictor.predict({"instances": _one_hot_instances()})
            assert list(answer) == ["predictions"] and np.array(answer["predictions"]).shape == (len(QUERIES), 1)
            np.testing.assert_allclose(answer["predictions"], report["predictions"], **CLOSE)

            # TF Serving's columnar form, and the model and version named through the predictor (custom attributes)
            named = TensorFlowPredictor(predictor.endpoint_name, run.session, model_name="model", model_version="1")
            columns = {"input_1": [r["input_1"] for r in _one_hot_instances()],
                       "input_2": [r["input_2"] for r in _one_hot_instances()]}  # fmt: skip
            assert named.predict({"inputs": columns}) == {"outputs": answer["predictions"]}
            missing = TensorFlowPredictor(predictor.endpoint_name, run.session, model_version="2").predict(
                {"instances": _one_hot_instances()}
            )
            assert missing["error_type"] == "NotFound" and "Specific(model, 2)" in missing["error"]
            # classify() on a Keras model: TF Serving's 400, saying why
            refused = predictor.classify({"examples": [{"input_1": 1.0}]})
            assert refused["error_type"] == "BadRequest"
            assert "Expected classification signature method_name to be tensorflow/serving/classify" in refused["error"]
        finally:
            predictor.delete_model()  # first: it finds the model through the endpoint config
            predictor.delete_endpoint(delete_endpoint_config=True)


def _wait_in_service(session, name: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = session.sagemaker_client.describe_endpoint(EndpointName=name)["EndpointStatus"]
        if status == "InService":
            return
        assert status != "Failed" and time.monotonic() < deadline, f"endpoint {name}: {status}"
        time.sleep(0.5)
