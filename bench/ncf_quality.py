"""ncf-tf's default NeuMF on the leave-latest-out protocol, measured through the served endpoint.

    python -m bench.ncf_quality --data .data/ml-latest-small [--image byoc-ncf-tf:<version>-cpu] [--seeds 0 1]
                                [--set name=value ...]   (a hyperparameter off its default: not the goal's protocol)

`--data` is a folder with a MovieLens ratings file (ml-latest-small's `ratings.csv`, ML-100K's `u.data`, ...).
Not in the repository: MovieLens may not be redistributed; fetch it into a git-ignored folder.

Protocol (`ncf_tf.evaluation.leave_latest_out`): per user the latest rating by timestamp is held out and ranked
against 100 items the user never rated, drawn with the job's seed; HR@10 and NDCG@10 over users. The training
channel holds the whole ratings file and the job, at its default `holdout=1`, holds each user's latest out of
training itself (the bench checks the served model's `ncf/seen.npz`: no held-out pair is among any user's
training items). Hyperparameters at their defaults (`seed` per run); the image trains in the /opt/ml harness,
then serves the model, and each user's 101 candidates are sent to the endpoint as raw `{"user_id", "item_id"}`
instances (50 users a request); HR/NDCG are computed from the endpoint's scores. Beside them: the job's own
in-training HR/NDCG (metrics.json), the popularity baseline on the same candidates, and the training time.
Prints and saves (bench/results/ncf_quality.json) the table; exits 1 when the goal (mean served HR@10 >= 0.72
and NDCG@10 >= 0.44) is missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import markdown_table, save

GOAL_HR, GOAL_NDCG, K = 0.72, 0.44, 10
USERS_PER_REQUEST = 50


def endpoint_scorer(endpoint):
    def score(user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        instances = [{"user_id": int(u), "item_id": int(i)} for u, i in zip(user_ids, item_ids, strict=True)]
        response = endpoint.invoke(json.dumps({"instances": instances}))
        response.raise_for_status()
        return np.array([p[0] for p in response.json()["predictions"]], np.float64)

    return score


def check_no_leak(model_dir: Path, protocol) -> None:
    """The served model's training items per user (ncf/seen.npz, raw ids via mappings.npz) hold no held-out pair."""
    maps = np.load(model_dir / "ncf" / "mappings.npz", allow_pickle=False)
    seen = np.load(model_dir / "ncf" / "seen.npz", allow_pickle=False)
    user_index = {int(u): n for n, u in enumerate(maps["user_ids"])}
    item_ids, indptr, items = maps["item_ids"], seen["indptr"], seen["items"]
    for user, held in zip(protocol.user_ids.tolist(), protocol.candidate_ids[:, 0].tolist(), strict=True):
        n = user_index[user]
        if held in set(item_ids[items[indptr[n] : indptr[n + 1]]].tolist()):
            raise SystemExit(f"leak: user {user}'s held-out item {held} is among the model's training items")


def measure(image: str, data: Path, seeds: list[int], hyperparameters: dict[str, str]) -> list[dict]:
    from local.harness import Harness
    from local.opt_ml import ChannelSpec
    from ncf_tf import evaluation
    from ncf_tf.ratings import find_ratings_file

    ratings_file = find_ratings_file(data) if data.is_dir() else data
    if ratings_file is None:
        raise SystemExit(f"no MovieLens ratings file in {data}")
    work = Path(tempfile.mkdtemp(prefix="ncf-quality-"))
    channel = work / "training"
    channel.mkdir()
    shutil.copyfile(ratings_file, channel / ratings_file.name)
    harness = Harness(work / "harness")
    rows = []
    for seed in seeds:
        protocol = evaluation.leave_latest_out(ratings_file, seed=seed)
        popularity = evaluation.ranking_metrics(protocol.popularity_scores(), K)
        started = time.perf_counter()
        job = harness.train(
            image, {**hyperparameters, "seed": str(seed)}, {"training": ChannelSpec(channel)}, timeout=1800
        )
        seconds = time.perf_counter() - started
        if not job.ok:
            raise SystemExit(f"seed {seed}: training failed: {job.master.failure}\n{job.logs()[-3000:]}")
        check_no_leak(job.model_dir, protocol)
        in_job = json.loads((job.output_data_dir / "metrics.json").read_text())
        with harness.serve(image, job.model_dir) as endpoint:
            scores = evaluation.score_candidates(protocol, endpoint_scorer(endpoint), USERS_PER_REQUEST)
        served = evaluation.ranking_metrics(scores, K)
        row = {
            "seed": seed,
            "users": len(protocol.user_ids),
            "served_hr_at_10": served[f"hr_at_{K}"],
            "served_ndcg_at_10": served[f"ndcg_at_{K}"],
            "job_hr_at_10": in_job.get(f"hr_at_{K}"),
            "job_ndcg_at_10": in_job.get(f"ndcg_at_{K}"),
            "popularity_hr_at_10": popularity[f"hr_at_{K}"],
            "popularity_ndcg_at_10": popularity[f"ndcg_at_{K}"],
            "job_train_seconds": round(float(in_job.get("train_seconds", float("nan"))), 1),
            "job_seconds_with_container": round(seconds, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with a MovieLens ratings file")
    parser.add_argument("--image", default=None, help="default: ./build.sh's byoc-ncf-tf CPU tag")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="the job's seed (default 0: the default)")
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", help="hyperparameters off their defaults")
    args = parser.parse_args(argv)
    hyperparameters = dict(item.split("=", 1) for item in args.set)
    if args.image is None:
        from tests.images import build_image

        args.image = build_image("ncf-tf")
    rows = measure(args.image, args.data, args.seeds, hyperparameters)
    mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key.endswith("_at_10")}
    met = mean["served_hr_at_10"] >= GOAL_HR and mean["served_ndcg_at_10"] >= GOAL_NDCG

    def cells(r: dict) -> list:
        return [
            round(r[k], 4)
            for k in (
                "served_hr_at_10",
                "served_ndcg_at_10",
                "job_hr_at_10",
                "job_ndcg_at_10",
                "popularity_hr_at_10",
                "popularity_ndcg_at_10",
            )
        ]

    table = [[r["seed"], *cells(r), r["job_train_seconds"], r["job_seconds_with_container"]] for r in rows]
    if len(rows) > 1:
        table.append(["mean", *cells(mean), "", ""])
    headers = [
        "seed",
        "served HR@10",
        "served NDCG@10",
        "job's HR@10",
        "job's NDCG@10",
        "popularity HR@10",
        "popularity NDCG@10",
        "train s (in job)",
        "job s (with container)",
    ]
    print(markdown_table(headers, table))
    print(
        f"goal: served HR@10 >= {GOAL_HR} and NDCG@10 >= {GOAL_NDCG} (mean over seeds {args.seeds}): "
        f"{'met' if met else 'NOT met'}"
    )
    summary = {
        "image": args.image,
        "data": args.data.name,
        "protocol": "leave-latest-out: each user's latest rating ranked against 100 sampled unrated items",
        "hyperparameters": hyperparameters or "defaults",
        "runs": rows,
        "mean": mean,
        "goal": f"served HR@10 >= {GOAL_HR} and NDCG@10 >= {GOAL_NDCG}",
        "met": met,
    }
    path = save(
        "ncf_quality" if not hyperparameters else "ncf_quality_off_defaults",
        summary,
        " ".join(["python -m bench.ncf_quality", *sys.argv[1:]]),
    )
    print(f"saved {path}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
