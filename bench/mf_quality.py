"""mxnet-mf's default model on ML-100K's five canonical splits, measured through the served endpoint.

    python -m bench.mf_quality --data .data/ml-100k [--image byoc-mxnet-mf:<version>-cpu] [--folds 1 2 3 4 5]
                               [--set name=value ...]   (a hyperparameter off its default: not the goal's protocol)

`--data` is a folder with MovieLens 100K's `u.data` (and `u1.base` .. `u5.test`, made from u.data as the
set's mku.sh makes them when absent). Not in the repository: MovieLens may not be redistributed; fetch it
into a git-ignored folder. Protocol, per fold: `u<i>.base` is the only channel (no validation channel, so
nothing of the test split reaches training), hyperparameters all at their defaults; the image trains in the
/opt/ml harness, then serves the model, and every `u<i>.test` pair is sent to the endpoint in requests of
1,000 `{"user_id", "item_id"}` instances (`unknown_ids: fallback`, as a few test items were never rated in
base). The RMSE is that of the answers. Side by side, when scikit-surprise is installed, Surprise's SVD with
its defaults on the same splits. Prints and saves (bench/results/mf_quality.json) the table; exits 1 when the
goal (mean RMSE <= 0.90, every fold trained in <= 60 s) is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import markdown_table, save

GOAL_RMSE, GOAL_SECONDS = 0.90, 60.0
CHUNK = 1000


def read_ratings(path: Path) -> np.ndarray:
    """(n, 3) user, item, rating."""
    return np.loadtxt(path, dtype=np.int64, usecols=(0, 1, 2), ndmin=2)


def make_folds(data: Path, out: Path) -> Path:
    """u1..u5 as mku.sh makes them: fold i's test set is lines (i-1)*20000+1 .. i*20000 of u.data, its base the
    rest, both sorted by user then item. Returns the folder holding them (data itself when they exist)."""
    if all((data / f"u{i}.{part}").exists() for i in range(1, 6) for part in ("base", "test")):
        return data
    lines = (data / "u.data").read_text().splitlines()
    out.mkdir(parents=True, exist_ok=True)

    def key(line: str) -> tuple[int, int]:
        user, item = line.split("\t")[:2]
        return int(user), int(item)

    for i in range(1, 6):
        test = lines[(i - 1) * 20000 : i * 20000]
        base = lines[: (i - 1) * 20000] + lines[i * 20000 :]
        (out / f"u{i}.test").write_text("\n".join(sorted(test, key=key)) + "\n")
        (out / f"u{i}.base").write_text("\n".join(sorted(base, key=key)) + "\n")
    return out


def served_rmse(endpoint, test: np.ndarray) -> float:
    predicted = []
    for start in range(0, len(test), CHUNK):
        chunk = test[start : start + CHUNK]
        body = {"instances": [{"user_id": int(u), "item_id": int(i)} for u, i, _ in chunk], "unknown_ids": "fallback"}
        response = endpoint.invoke(json.dumps(body))
        response.raise_for_status()
        predicted += [answer["rating"] for answer in response.json()["predictions"]]
    return float(np.sqrt(np.mean((np.array(predicted) - test[:, 2]) ** 2)))


def surprise_rmse(base: np.ndarray, test: np.ndarray) -> tuple[float, float] | None:
    try:
        from surprise import SVD, Dataset, Reader
    except ImportError:
        return None
    import pandas as pd

    frame = pd.DataFrame(base, columns=["user", "item", "rating"])
    trainset = Dataset.load_from_df(frame, Reader(rating_scale=(1, 5))).build_full_trainset()
    started = time.perf_counter()
    algorithm = SVD(random_state=0).fit(trainset)
    seconds = time.perf_counter() - started
    predicted = np.array([algorithm.predict(int(u), int(i)).est for u, i, _ in test])
    return float(np.sqrt(np.mean((predicted - test[:, 2]) ** 2))), seconds


def measure(image: str, data: Path, folds: list[int], hyperparameters: dict[str, str]) -> list[dict]:
    from local.harness import Harness
    from local.opt_ml import ChannelSpec

    work = Path(tempfile.mkdtemp(prefix="mf-quality-"))
    splits = make_folds(data, work / "splits")
    harness = Harness(work / "harness")
    rows = []
    for fold in folds:
        base, test = read_ratings(splits / f"u{fold}.base"), read_ratings(splits / f"u{fold}.test")
        channel = work / f"u{fold}" / "train"
        channel.mkdir(parents=True)
        (channel / f"u{fold}.base").write_bytes((splits / f"u{fold}.base").read_bytes())
        started = time.perf_counter()
        job = harness.train(image, hyperparameters, {"train": ChannelSpec(channel)})
        seconds = time.perf_counter() - started
        if not job.ok:
            raise SystemExit(f"u{fold}: training failed: {job.master.failure}\n{job.logs()[-3000:]}")
        with harness.serve(image, job.model_dir) as endpoint:
            rmse = served_rmse(endpoint, test)
        row = {"fold": f"u{fold}", "rmse": rmse, "train_seconds": round(seconds, 1)}
        reference = surprise_rmse(base, test)
        if reference is not None:
            row.update(surprise_svd_rmse=reference[0], surprise_svd_seconds=round(reference[1], 1))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with ML-100K's u.data")
    parser.add_argument("--image", default=None, help="default: ./build.sh's byoc-mxnet-mf CPU tag")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5], choices=range(1, 6))
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", help="hyperparameters off their defaults")
    args = parser.parse_args(argv)
    hyperparameters = dict(item.split("=", 1) for item in args.set)
    if args.image is None:
        from tests.images import build_image

        args.image = build_image("mxnet-mf")
    rows = measure(args.image, args.data, args.folds, hyperparameters)
    mean = float(np.mean([r["rmse"] for r in rows]))
    slowest = max(r["train_seconds"] for r in rows)
    met = mean <= GOAL_RMSE and slowest <= GOAL_SECONDS
    has_reference = all("surprise_svd_rmse" in r for r in rows)
    table = [
        [r["fold"], round(r["rmse"], 4), r["train_seconds"]]
        + ([round(r["surprise_svd_rmse"], 4), r["surprise_svd_seconds"]] if has_reference else [])
        for r in rows
    ]
    reference_mean = float(np.mean([r["surprise_svd_rmse"] for r in rows])) if has_reference else None
    table.append(["mean", round(mean, 4), f"max {slowest}"] + ([round(reference_mean, 4), ""] if has_reference else []))
    headers = ["split", "served RMSE", "train s (job, with container start)"]
    print(markdown_table(headers + (["Surprise SVD RMSE", "Surprise s"] if has_reference else []), table))
    print(f"goal: mean RMSE <= {GOAL_RMSE} and every fold <= {GOAL_SECONDS:.0f} s: {'met' if met else 'NOT met'}")
    summary = {
        "image": args.image,
        "hyperparameters": hyperparameters or "defaults",
        "folds": rows,
        "mean_rmse": mean,
        "surprise_svd_mean_rmse": reference_mean,
    }
    summary.update(goal=f"mean RMSE <= {GOAL_RMSE}, train <= {GOAL_SECONDS:.0f} s a fold", met=met)
    path = save(
        "mf_quality" if not hyperparameters else "mf_quality_off_defaults",
        summary,
        " ".join(["python -m bench.mf_quality", *sys.argv[1:]]),
    )
    print(f"saved {path}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
