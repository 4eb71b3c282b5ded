"""SavedModels of every kind ncf-tf must serve, and what TensorFlow itself answers for them: run inside the ncf-tf
image (`python savedmodel_fixtures.py OUT`), since the test host has no TensorFlow. Writes

  OUT/single/000000001, OUT/single/000000003      one model at the top (TF Serving's <version>/ layout): the
                                                  course's one-hot NCF in Keras, two trainings (seeds)
  OUT/multi/onehot/1                               the same kind of model, under a name
  OUT/multi/multi_io/1                             tf.Module: inputs a (float [-1, 3]) and b (int32 [-1]) ->
                                                  score [-1, 1] and logits [-1, 2]; a second signature "total"
  OUT/multi/linear3/1                              x float [-1, 3] -> y [-1] (one input, one output)
  OUT/multi/examples/1                             TF1 graph: serving_default a classify signature (classes yes/no),
                                                  "regress" a regress signature, both on serialized tf.Examples
  OUT/multi/strings/1                              text string [-1] -> length int32 [-1], upper_bytes string [-1]
  OUT/expected.json                                inputs and TensorFlow's own outputs for each
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

N_USERS, N_ITEMS = 7, 11


def onehot_ncf(directory: str, seed: int) -> tf.keras.Model:
    """The course's NCF in Keras: one-hot user and item vectors through Dense layers, a sigmoid output."""
    tf.keras.utils.set_random_seed(seed)
    user = tf.keras.Input(shape=(N_USERS,), name="input_1")
    item = tf.keras.Input(shape=(N_ITEMS,), name="input_2")
    u = tf.keras.layers.Dense(4, name="user_dense")(user)
    i = tf.keras.layers.Dense(4, name="item_dense")(item)
    x = tf.keras.layers.Concatenate()([u, i])
    x = tf.keras.layers.Dense(8, activation="relu")(x)
    out = tf.keras.layers.Dense(1, activation="sigmoid", name="prediction")(x)
    model = tf.keras.Model(inputs=[user, item], outputs=out)
    model.save(directory)
    return model


class MultiIO(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable([[0.5], [-1.0], [2.0]])
        self.table = tf.Variable([[0.1, 0.2], [0.3, -0.4], [1.5, 0.0], [-2.0, 1.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.int32)])
    def serve(self, a, b):
        return {"score": tf.matmul(a, self.w) + tf.cast(b, tf.float32)[:, None],
                "logits": tf.gather(self.table, b) * tf.reduce_sum(a, axis=1, keepdims=True)}  # fmt: skip

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def total(self, x):
        return {"total": tf.reduce_sum(x * tf.transpose(self.w), axis=1)}


class Linear3(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable([1.0, 2.0, 3.0])

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def serve(self, x):
        return {"y": tf.reduce_sum(x * self.w, axis=1) + 0.5}


class Strings(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, text):
        return {"length": tf.strings.length(text), "upper_bytes": tf.strings.upper(text)}


def examples_model(directory: str, examples: list[dict]) -> tuple[list, list]:
    """A TF1 graph with classify and regress signatures over serialized tf.Examples (x: 2 floats, k: an int);
    returns its scores and regression values for `examples`."""
    graph = tf.Graph()
    with graph.as_default():
        serialized = tf.compat.v1.placeholder(tf.string, [None], name="tf_example")
        features = tf.io.parse_example(serialized, {
            "x": tf.io.FixedLenFeature([2], tf.float32),
            "k": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        })  # fmt: skip
        w = tf.compat.v1.get_variable("w", initializer=tf.constant([[1.0], [-2.0]]))
        y = tf.matmul(features["x"], w)[:, 0] + tf.cast(features["k"], tf.float32)
        p = tf.sigmoid(y)
        scores = tf.stack([p, 1 - p], axis=1)
        classes = tf.tile(tf.constant([["yes", "no"]]), [tf.shape(y)[0], 1])
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(directory)
            signatures = {
                "serving_default": tf.compat.v1.saved_model.classification_signature_def(serialized, classes, scores),
                "regress": tf.compat.v1.saved_model.regression_signature_def(serialized, y),
            }
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
            builder.save()

            protos = []
            for e in examples:
                feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=e["x"]))}
                if "k" in e:
                    feature["k"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[e["k"]]))
                protos.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
            s, v = session.run([scores, y], {serialized: protos})
            return s.tolist(), v.tolist()


def main(out: str) -> None:
    rng = np.random.default_rng(0)
    expected: dict = {}
    pairs = [(0, 3), (6, 10), (2, 0), (4, 4)]
    one_hot = {
        "input_1": np.eye(N_USERS, dtype=np.float32)[[u for u, _ in pairs]],
        "input_2": np.eye(N_ITEMS, dtype=np.float32)[[i for _, i in pairs]],
    }
    expected["onehot_inputs"] = {k: v.tolist() for k, v in one_hot.items()}
    for name, seed, directory in [
        ("single_v1", 1, f"{out}/single/000000001"),
        ("single_v3", 3, f"{out}/single/000000003"),
        ("onehot", 5, f"{out}/multi/onehot/1"),
    ]:
        model = onehot_ncf(directory, seed)
        expected[name] = model.predict(one_hot, verbose=0).tolist()

    a = rng.normal(size=(3, 3)).astype(np.float32)
    b = np.array([0, 3, 1], np.int32)
    module = MultiIO()
    tf.saved_model.save(module, f"{out}/multi/multi_io/1", signatures={"serving_default": module.serve,
                                                                        "total": module.total})  # fmt: skip
    served = module.serve(tf.constant(a), tf.constant(b))
    expected["multi_io"] = {"a": a.tolist(), "b": b.tolist(), "score": served["score"].numpy().tolist(),
                            "logits": served["logits"].numpy().tolist(),
                            "total": module.total(tf.constant(a))["total"].numpy().tolist()}  # fmt: skip

    linear = Linear3()
    tf.saved_model.save(linear, f"{out}/multi/linear3/1", signatures={"serving_default": linear.serve})
    x = np.array([[1, 0, 0], [0.5, 0.25, 2]], np.float32)
    expected["linear3"] = {"x": x.tolist(), "y": linear.serve(tf.constant(x))["y"].numpy().tolist()}

    strings = Strings()
    tf.saved_model.save(strings, f"{out}/multi/strings/1", signatures={"serving_default": strings.serve})

    examples = [{"x": [1.0, 0.5]}, {"x": [0.25, 2.0], "k": 3}]
    scores, values = examples_model(f"{out}/multi/examples/1", examples)
    expected["examples"] = {"examples": examples, "scores": scores, "values": values}
    with open(f"{out}/expected.json", "w") as f:
        json.dump(expected, f)
    for root, _, files in os.walk(out):  # the serving workers run as another user
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


if __name__ == "__main__":
    main(sys.argv[1])
