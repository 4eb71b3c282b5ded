"""The Object2Vec course's two models on ML-100K, measured through the served endpoint.

    python -m bench.object2vec_course --data .data/ml-100k [--image byoc-mxnet-mf:<version>-cpu]

`--data` is a folder with MovieLens 100K's `ua.base` and `ua.test` (not in the repository: MovieLens may not
be redistributed; fetch it into a git-ignored folder). The course's steps: ua.base -> train, ua.test ->
validation, as the course's JSON Lines (shuffled; the recommendation set's labels 1 if rating > 3 else 0);
its two hyperparameter dicts unchanged (tests/test_object2vec_course.py holds them); each trained by the
image in the /opt/ml harness, then served by the image, and every ua.test pair sent to the endpoint in
requests of 1,000 instances. Prints and saves (bench/results/object2vec_course.json) the rating RMSE and the
binarized accuracy of what the endpoints answered, next to the course's own Object2Vec figures and our goals.
Fails (exit 1) when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import markdown_table, save

GOALS = {"rating": ("rmse", 0.93, "<="), "recommendation": ("accuracy", 0.72, ">=")}
COURSE = {"rating": 0.954, "recommendation": 0.704}  # the course's Object2Vec (its notebook's outputs)
CHUNK = 1000


def read_ratings(path: Path) -> list[tuple[int, int, float]]:
    rows = []
    for line in path.read_text().splitlines():
        user, movie, rating = line.split("\t")[:3]
        rows.append((int(user), int(movie), float(rating)))
    return rows


def write_jsonl(rows, path: Path, binarize: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for user, movie, rating in rows:
            label = (1 if rating > 3 else 0) if binarize else rating
            out.write(json.dumps({"in0": [user], "in1": [movie], "label": label}) + "\n")


def measure(image: str, data: Path) -> dict:
    from local.harness import Harness
    from local.opt_ml import ChannelSpec
    from tests.test_object2vec_course import HYPERPARAMETERS_RATING, HYPERPARAMETERS_REC

    train, test = read_ratings(data / "ua.base"), read_ratings(data / "ua.test")
    random.Random(0).shuffle(train)
    work = Path(tempfile.mkdtemp(prefix="o2v-course-"))
    harness = Harness(work / "harness")
    results = {}
    for task, hyperparameters in (("rating", HYPERPARAMETERS_RATING), ("recommendation", HYPERPARAMETERS_REC)):
        binarize = task == "recommendation"
        channels = {}
        for channel, rows in (("train", train), ("validation", test)):
            write_jsonl(rows, work / task / channel / f"{channel}.jsonl", binarize)
            channels[channel] = ChannelSpec(work / task / channel, "application/jsonlines")
        started = time.perf_counter()
        job = harness.train(image, {k: str(v) for k, v in hyperparameters.items()}, channels)
        seconds = time.perf_counter() - started
        if not job.ok:
            raise SystemExit(f"{task}: training failed: {job.master.failure}\n{job.logs()[-3000:]}")
        metrics = json.loads((job.model_dir / "metrics.json").read_text())
        answers = []
        with harness.serve(image, job.model_dir) as endpoint:
            for start in range(0, len(test), CHUNK):
                chunk = test[start : start + CHUNK]
                body = {"instances": [{"in0": [u], "in1": [m]} for u, m, _ in chunk], "unknown_ids": "fallback"}
                response = endpoint.invoke(json.dumps(body))
                response.raise_for_status()
                answers += response.json()["predictions"]
        labels = np.array([r for _, _, r in test])
        if binarize:
            known = np.array([len(a["scores"]) == 2 for a in answers])
            predicted = np.array([a.get("predicted_label", -1) for a in answers])
            value = float(np.mean(predicted == (labels > 3)))
        else:
            known = np.ones(len(answers), dtype=bool)
            value = float(np.sqrt(np.mean((np.array([a["scores"][0] for a in answers]) - labels) ** 2)))
        name, goal, sense = GOALS[task]
        met = value <= goal if sense == "<=" else value >= goal
        results[task] = {
            name: value,
            "goal": f"{sense} {goal}",
            "met": met,
            "course_object2vec": COURSE[task],
            "epochs": metrics["epochs"],
            "best_epoch": metrics.get("best_epoch"),
            "train_seconds": round(seconds, 1),
            "answered": int(known.sum()),
            "pairs": len(test),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with ML-100K's ua.base and ua.test")
    parser.add_argument("--image", default=None, help="default: ./build.sh's byoc-mxnet-mf CPU tag")
    args = parser.parse_args(argv)
    if args.image is None:
        from tests.images import build_image

        args.image = build_image("mxnet-mf")
    results = measure(args.image, args.data)
    rows = [
        [task, round(r.get("rmse", r.get("accuracy")), 4), r["goal"], "yes" if r["met"] else "NO",
         r["course_object2vec"], f"{r['best_epoch']}/{r['epochs']}", r["train_seconds"]]
        for task, r in results.items()
    ]  # fmt: skip
    print(
        markdown_table(["model", "served figure", "goal", "met", "course's Object2Vec", "best/epochs", "train s"], rows)
    )
    path = save(
        "object2vec_course",
        {"image": args.image, "results": results},
        " ".join(["python -m bench.object2vec_course", *sys.argv[1:]]),
    )
    print(f"saved {path}")
    return 0 if all(r["met"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
