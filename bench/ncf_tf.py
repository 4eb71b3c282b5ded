"""NCF training throughput and serving latency, side by side in one run.

    python -m bench.ncf_tf [--quick]

(run it with a Python that has tensorflow-cpu 2.21 and tf-keras, e.g. a virtualenv of yours)

Training, on generated ratings at the course's scale (610 users x 9,724 items, ~100k ratings, the latest per
user held out, 5 negatives per positive as the course samples them), same NeuMF sizes (8 factors, MLP 64-32-16-8),
same batch (256), same Keras (tf-keras), each in a fresh process so that peak memory is its own:
  - course: a Python generator yielding one-hot user and item vectors per batch into Dense "embeddings";
  - ours:   the image's pipeline (ncf_tf.pipeline + ncf_tf.model: tf.data over index arrays, Embedding lookups).
Both report examples/s, peak RSS, and HR@10/NDCG@10 (leave-one-out vs 100 sampled negatives) after --epochs.
Serving: the trained NeuMF exported as the image exports it, served by the byoc-ncf-tf image; sequential
keep-alive latency of 1-row and 100-row requests, in-process handler chain vs HTTP; cold start to /ping 200.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import markdown_table, save

N_USERS, N_ITEMS, PER_USER, NUM_NEG, BATCH = 610, 9724, 165, 5, 256
FACTORS, LAYERS = 8, [64, 32, 16, 8]


def _data(quick: bool):
    from ncf_tf import prep
    from ncf_tf.ratings import Ratings

    rows = synthetic_rows(quick)
    ratings = Ratings(rows[:, 0], rows[:, 1], rows[:, 2].astype(float), rows[:, 3].astype(float))
    data = prep.from_ratings(ratings, holdout=1)
    return data, prep.eval_set(data, seed=0)


def synthetic_rows(quick: bool) -> np.ndarray:
    from ncf_tf import synthetic

    users = 150 if quick else N_USERS
    return synthetic.planted_ratings(n_users=users, n_items=N_ITEMS, per_user=PER_USER, groups=20, seed=0)


def _evaluate(score_fn, evalset) -> dict[str, float]:
    from ncf_tf import evaluation

    users = np.repeat(evalset.users, evalset.candidates.shape[1])
    scores = score_fn(users, evalset.candidates.ravel()).reshape(evalset.candidates.shape)
    return {"hr_at_10": evaluation.hit_ratio(scores, 10), "ndcg_at_10": evaluation.ndcg(scores, 10)}


def train_ours(quick: bool, export: Path | None, epochs: int) -> dict:
    import tf_keras as keras

    from ncf_tf import artifacts, model
    from ncf_tf.pipeline import EpochSampler, dataset
    from ncf_tf.train import SPEC

    data, evalset = _data(quick)
    sampler = EpochSampler(data, NUM_NEG, seed=0)
    net = model.build("neumf", data.n_users, data.n_items, FACTORS, LAYERS)
    net.compile(
        keras.optimizers.Adam(0.001), "binary_crossentropy", steps_per_execution=SPEC["steps_per_execution"].default
    )
    users, items, labels = sampler.epoch(0)
    warm = BATCH * 64
    net.fit(dataset(users[:warm], items[:warm], labels[:warm], BATCH), verbose=0)  # trace once, untimed
    started, examples = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        users, items, labels = sampler.epoch(epoch)  # negative sampling is part of the measured pipeline
        net.fit(dataset(users, items, labels, BATCH), epochs=1, verbose=0)
        examples += len(users)
    seconds = time.perf_counter() - started
    score = model.scorer(net)
    quality = _evaluate(lambda u, i: model.score_pairs(score, u, i), evalset)
    result = {"examples": examples, "seconds": seconds, "epochs": epochs, **quality}
    if export is not None:
        net.save(str(export / artifacts.MODEL_VERSION), save_format="tf", include_optimizer=False)
        artifacts.write_extras(export, data.user_ids, data.item_ids, data.train_users, data.train_items, {})
    return result


def build_course_model(n_users: int, n_items: int):
    """The course's NeuMF: one-hot inputs, Dense layers standing in for the embeddings."""
    import tf_keras as keras

    user = keras.Input(shape=(n_users,), name="input_1")
    item = keras.Input(shape=(n_items,), name="input_2")
    gmf = keras.layers.Multiply()([keras.layers.Dense(FACTORS)(user), keras.layers.Dense(FACTORS)(item)])
    x = keras.layers.Concatenate()([keras.layers.Dense(LAYERS[0] // 2)(user), keras.layers.Dense(LAYERS[0] // 2)(item)])
    for width in LAYERS[1:]:
        x = keras.layers.Dense(width, activation="relu")(x)
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([gmf, x]))
    return keras.Model([user, item], out)


def course_generator(users, items, labels, n_users, n_items, batch):
    """What the course feeds to fit(): a Python loop building dense one-hot arrays for every batch."""
    while True:
        for start in range(0, len(users), batch):
            u, i = users[start : start + batch], items[start : start + batch]
            user_hot = np.zeros((len(u), n_users), np.float32)
            item_hot = np.zeros((len(i), n_items), np.float32)
            user_hot[np.arange(len(u)), u] = 1.0
            item_hot[np.arange(len(i)), i] = 1.0
            yield [user_hot, item_hot], labels[start : start + batch]


def train_course(quick: bool, steps: int | None, epochs: int) -> dict:
    import tf_keras as keras

    from ncf_tf import prep

    data, evalset = _data(quick)
    known = data.known_keys()
    rng = np.random.default_rng(1)
    users, items, labels = prep.with_negatives(data.train_users, data.train_items, NUM_NEG, data.n_items, known, rng)
    order = rng.permutation(len(users))
    users, items, labels = users[order], items[order], labels[order]
    net = build_course_model(data.n_users, data.n_items)
    net.compile(keras.optimizers.Adam(0.001), "binary_crossentropy")
    batches = -(-len(users) // BATCH)
    steps = min(steps or batches, batches)
    net.fit(course_generator(users, items, labels, data.n_users, data.n_items, BATCH), steps_per_epoch=8, verbose=0)
    started = time.perf_counter()
    net.fit(
        course_generator(users, items, labels, data.n_users, data.n_items, BATCH),
        steps_per_epoch=steps,
        epochs=epochs,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    examples = min(steps * BATCH, len(users)) * epochs

    def score(u, i):
        out = []
        for s in range(0, len(u), 4096):
            uu, ii = u[s : s + 4096], i[s : s + 4096]
            uh = np.zeros((len(uu), data.n_users), np.float32)
            ih = np.zeros((len(ii), data.n_items), np.float32)
            uh[np.arange(len(uu)), uu] = 1
            ih[np.arange(len(ii)), ii] = 1
            out.append(net([uh, ih], training=False).numpy().ravel())
        return np.concatenate(out)

    quality = _evaluate(score, evalset)
    return {"examples": examples, "seconds": seconds, "epochs": epochs, "full_epoch": steps == batches, **quality}


def _child(kind: str, quick: bool, export: str | None, steps: int | None, epochs: int) -> None:
    if kind == "ours":
        result = train_ours(quick, Path(export) if export else None, epochs)
    else:
        result = train_course(quick, steps, epochs)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def run_child(kind: str, quick: bool, epochs: int, export: Path | None = None, steps: int | None = None) -> dict:
    args = [sys.executable, "-m", "bench.ncf_tf", "--child", kind, "--epochs", str(epochs)]
    args += ["--quick"] if quick else []
    args += ["--export", str(export)] if export else []
    args += ["--steps", str(steps)] if steps else []
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(args, capture_output=True, text=True, env=env)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))


def _percentiles(timings: list[float]) -> dict[str, float]:
    ordered = sorted(timings)
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000}


def serving(model_dir: Path, repeats: int) -> dict:
    import http.client

    from byoc_runtime.handlers import Handlers
    from byoc_runtime.invocation import invoke
    from local.harness import Harness
    from ncf_tf import serving as ncf_serving
    from tests.images import build_image

    handlers = Handlers().overridden_by(ncf_serving)
    model = handlers.model_fn(str(model_dir))
    rng = np.random.default_rng(0)
    bodies = {}
    for rows in (1, 100):
        u, i = rng.integers(0, model.extras.n_users, rows), rng.integers(0, model.extras.n_items, rows)
        pairs = zip(u.tolist(), i.tolist(), strict=True)
        bodies[rows] = json.dumps({"instances": [{"input_1": a, "input_2": b} for a, b in pairs]})
    results: dict = {}
    for rows, body in bodies.items():
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            status, _, _ = invoke(handlers, model, body.encode(), "application/json", "application/json")
            timings.append(time.perf_counter() - started)
            assert status == 200
        results[f"in_process_{rows}"] = _percentiles(timings)
    image = build_image("ncf-tf")
    harness = Harness(tempfile.mkdtemp(prefix="bench-ncf-"))
    started = time.perf_counter()
    endpoint = harness.start_endpoint(image, model_dir)
    results["cold_start_s"] = time.perf_counter() - started
    try:
        host, port = endpoint.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port))
        for rows, body in bodies.items():
            timings = []
            for _ in range(repeats):
                started = time.perf_counter()
                connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                timings.append(time.perf_counter() - started)
                assert response.status == 200
            results[f"http_{rows}"] = _percentiles(timings)
        connection.close()
    finally:
        harness.stop_endpoint(endpoint)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 users instead of 610, fewer requests")
    parser.add_argument("--course-steps", type=int, help="cap the course's epoch at this many batches")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each pipeline (HR@10 is measured after them)")
    parser.add_argument("--child", choices=("ours", "course"), help=argparse.SUPPRESS)
    parser.add_argument("--export", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.quick, args.export, args.steps, args.epochs)
        return 0
    model_dir = Path(tempfile.mkdtemp(prefix="bench-ncf-model-"))
    model_dir.chmod(0o755)  # the image serves as an unprivileged user
    ours = run_child("ours", args.quick, args.epochs, export=model_dir)
    course = run_child("course", args.quick, args.epochs, steps=args.course_steps)
    for r in (ours, course):
        r["examples_per_s"] = r["examples"] / r["seconds"]
    speedup = ours["examples_per_s"] / course["examples_per_s"]
    one_hot_batch_mb = BATCH * (N_USERS + N_ITEMS) * 4 / 2**20
    rows = [
        [
            "course: generator + one-hot Dense",
            f"{course['examples_per_s']:,.0f}",
            f"{course['peak_rss_mb']:,.0f}",
            f"{one_hot_batch_mb:.1f} MB",
            f"{course['hr_at_10']:.3f}",
            f"{course['ndcg_at_10']:.3f}",
            f"{course['examples']:,}" + ("" if course["full_epoch"] else " (capped)"),
        ],
        [
            "ours: tf.data + Embedding",
            f"{ours['examples_per_s']:,.0f}",
            f"{ours['peak_rss_mb']:,.0f}",
            f"{BATCH * 2 * 4 / 1024:.1f} KB",
            f"{ours['hr_at_10']:.3f}",
            f"{ours['ndcg_at_10']:.3f}",
            f"{ours['examples']:,}",
        ],
    ]
    print(f"\n## NCF training, {args.epochs} epoch(s), batch {BATCH} (speed-up {speedup:.1f}x)\n")
    print(
        markdown_table(
            ["pipeline", "examples/s", "peak RSS MB", "inputs per batch", "HR@10", "NDCG@10", "examples timed"], rows
        )
    )
    serve = serving(model_dir, 50 if args.quick else 300)
    print("\n## NCF serving (byoc-ncf-tf, JSON instances form, sequential keep-alive)\n")
    print(
        markdown_table(
            ["request", "in-process p50 ms", "in-process p99 ms", "HTTP p50 ms", "HTTP p99 ms"],
            [
                [
                    f"{n} row{'s' if n > 1 else ''}",
                    f"{serve[f'in_process_{n}']['p50_ms']:.2f}",
                    f"{serve[f'in_process_{n}']['p99_ms']:.2f}",
                    f"{serve[f'http_{n}']['p50_ms']:.2f}",
                    f"{serve[f'http_{n}']['p99_ms']:.2f}",
                ]
                for n in (1, 100)
            ],
        )
    )
    print(f"\ncold start to /ping 200: {serve['cold_start_s']:.1f} s")
    name = "ncf_tf_quick" if args.quick else "ncf_tf"
    command = "python -m bench.ncf_tf" + (" --quick" if args.quick else "")
    command += f" --epochs {args.epochs}" if args.epochs != 1 else ""
    command += f" --course-steps {args.course_steps}" if args.course_steps else ""
    path = save(
        name,
        {
            "training": {
                "ours": ours,
                "course": course,
                "speedup": speedup,
                "batch_size": BATCH,
                "num_neg": NUM_NEG,
                "one_hot_batch_mb": one_hot_batch_mb,
            },
            "serving": serve,
        },
        command,
    )
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
