"""mxnet-mf's MF trainer against Surprise's SVD: training ratings/s and held-out RMSE as the data grows.

    python -m bench.mxnet_mf --vs-surprise [--sizes 100k 1M 10M] [--factors 64] [--rounds 2] [--batch N]
    python -m bench.mxnet_mf_vs_surprise ...                  (the same)

Data: mxnet_mf.synthetic's planted low-rank ratings (long-tailed users and items, 1-5 stars) in the shapes of
MovieLens 100K (943 users x 1,682 items), 1M (6,040 x 3,706) and 10M (69,878 x 10,677), written as MovieLens
`ratings.dat`; 90 % train, 10 % held out (pairs whose user or item is not in the train part are dropped from
the held-out part, so both predict from learned rows). Both read the same files.

- Surprise's SVD (scikit-surprise, in this bench's environment only: never in an image) on this host, with
  the same factors and epochs and its other defaults (lr 0.005, reg 0.02, one rating per SGD step).
- Our trainer inside the byoc-mxnet-mf image, as shipped (its CPU settings, its `train.py` choices for the
  data size: `train.large_data_settings`), with this bench mounted: `fitting.fit` on model mf, the trainer's
  defaults but factors and epochs; the MF only (a `train` job by default also fits the I-AutoRec afterwards).
  From 500k ratings that is the large-data loop: mini-batch lazy Adam in mf_kernel's numba-compiled step on
  every core (the image's numba, its compiled code loaded from the cache the image build warmed).

Training ratings/s = training ratings x epochs / seconds of the fit call alone: data loading is excluded on
both sides (file parsing, Surprise's `build_full_trainset`, our id indexing), our per-batch grouping before
the first epoch is included; loading the compiled kernel (numba's import and its cache) is not: it is part of
the job's fixed cost, timed apart (kernel_load_seconds). RMSE: both predictions clipped to 1..5. The job's fixed
cost (container start to its first batch) is measured separately, from real `train` jobs' log timestamps: on
the 100k data (the autograd loop), and on the 1M data (the large-data loop: up to the kernel's "mf kernel: ..."
line, printed just before its first batch), once with numba's cache as the image ships it and once without it
(BYOC_MF_KERNEL_NO_CACHE=1: a CPU unlike the build host's compiles the kernel at its first job).

Goal (exit 1 when missed): from 1M ratings up, our ratings/s >= Surprise's at an RMSE no worse than its.
Epochs: 5 at 100k and 1M, 3 at 10M: the whole run (2 rounds, 10M ratings generated, written and parsed twice)
takes about 7 minutes on 2 quiet cores, 20 with other work on them.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from bench.machine import markdown_table, save

ROOT = Path(__file__).resolve().parents[1]
# name: (ratings, users, items, epochs)
SIZES = {
    "100k": (100_000, 943, 1682, 5),
    "1M": (1_000_000, 6040, 3706, 5),
    "10M": (10_000_000, 69878, 10677, 3),
}
GOAL_FROM = 1_000_000


# ---------------------------------------------------------------------------------------------- inside the image
def inside(data_dir: str, epochs: int, factors: int, batch: int) -> None:
    """Runs in the byoc-mxnet-mf image: our trainer on DATA_DIR/train, RMSE on DATA_DIR/test; prints RESULT."""
    from byoc_runtime import cpu
    from byoc_runtime.hyperparameters import validate
    from byoc_runtime.training_env import Channel
    from mxnet_mf import train
    from mxnet_mf.data import IdIndex, read_ratings

    given = {"epochs": epochs, "num_factors": factors, **({"mini_batch_size": batch} if batch else {})}
    hp = validate({name: str(value) for name, value in given.items()}, train.SPEC)
    started = time.perf_counter()
    table = read_ratings(Channel("train", Path(data_dir) / "train"))
    environment = train.cpu_environment(hp, len(table), hosts=1, num_gpus=0)
    cpu.apply(environment)  # as train.py does, before MXNet is imported
    from mxnet_mf import fitting

    test = read_ratings(Channel("test", Path(data_dir) / "test"))
    user_index, users = IdIndex.build(table.users)
    item_index, items = IdIndex.build(table.items)
    test_users, test_items = user_index.lookup_array(test.users), item_index.lookup_array(test.items)
    loading = time.perf_counter() - started
    config = fitting.FitConfig(
        model="mf",
        num_factors=hp["num_factors"],
        hidden_units=hp["hidden_units"],
        dropout=hp["dropout"],
        epochs=hp["epochs"],
        batch_size=hp["mini_batch_size"],
        learning_rate=hp["learning_rate"],
        wd=hp["wd"],
        optimizer=hp["optimizer"],
        seed=hp["seed"],
        kvstore="local",
        l2=hp["l2"],
    )
    config = replace(config, **train.large_data_settings(hp, given, len(table), 1, 0))
    ratings = table.ratings
    fast = fitting.uses_fast_mf(config, False, fitting.contexts(0))
    started = time.perf_counter()
    if fast:  # numba imported, the kernel loaded from the image's cache: fixed cost, reported apart from the fit
        from mxnet_mf import mf_kernel

        mf_kernel.load(mf_kernel.steps())
    kernel_seconds = time.perf_counter() - started if fast else None
    started = time.perf_counter()
    result = fitting.fit(config, users, items, ratings, len(user_index), len(item_index), float(ratings.mean()))
    seconds = time.perf_counter() - started
    predicted = np.clip(fitting.predict(result.net, test_users, test_items), 1, 5)
    rmse = float(np.sqrt(np.mean((predicted - test.ratings) ** 2)))
    out = {
        "ratings": len(ratings),
        "epochs": epochs,
        "seconds": seconds,
        "ratings_per_second": len(ratings) * epochs / seconds,
        "epoch_ratings_per_second": [record["samples_per_second"] for record in result.history],
        "rmse": rmse,
        "loading_seconds": loading,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "loop": "fast_mf" if fast else "autograd",
        "kernel": _kernel() if fast else None,
        "kernel_load_seconds": kernel_seconds,
        "environment": environment,
    }
    print("RESULT " + json.dumps(out), flush=True)


def _kernel() -> str:
    from mxnet_mf import mf_kernel

    return mf_kernel.describe(mf_kernel.steps())


# ---------------------------------------------------------------------------------------------- on the host
def write_data(work: Path, ratings: int, users: int, items: int, seed: int = 5) -> tuple[Path, dict]:
    from mxnet_mf import synthetic

    data = synthetic.generate(num_users=users, num_items=items, num_ratings=ratings, seed=seed)
    train, test = data.split(0.1, seed=seed)
    known = np.isin(test.users, train.users) & np.isin(test.items, train.items)
    test = test._take(np.flatnonzero(known))
    folder = work / f"{ratings}"
    train.write(folder / "train" / "ratings.dat", "ratings.dat")
    test.write(folder / "test" / "ratings.dat", "ratings.dat")
    return folder, {"train": len(train.ratings), "test": len(test.ratings), "dropped_test": int((~known).sum())}


def read_dat(path: Path):
    import pandas as pd

    return pd.read_csv(path, sep="::", engine="python", names=["user", "item", "rating", "time"], usecols=[0, 1, 2])


def surprise(folder: Path, epochs: int, factors: int) -> dict:
    from surprise import SVD, Dataset, Reader

    train, test = read_dat(folder / "train" / "ratings.dat"), read_dat(folder / "test" / "ratings.dat")
    trainset = Dataset.load_from_df(train, Reader(rating_scale=(1, 5))).build_full_trainset()
    started = time.perf_counter()
    algorithm = SVD(n_factors=factors, n_epochs=epochs, random_state=0).fit(trainset)
    seconds = time.perf_counter() - started
    # What algorithm.predict computes (every held-out pair is known), vectorised: mu + b_u + b_i + <p_u, q_i>
    users = np.array([trainset.to_inner_uid(u) for u in test["user"].tolist()])
    items = np.array([trainset.to_inner_iid(i) for i in test["item"].tolist()])
    estimate = trainset.global_mean + algorithm.bu[users] + algorithm.bi[items]
    estimate += np.sum(algorithm.pu[users] * algorithm.qi[items], axis=1)
    rmse = float(np.sqrt(np.mean((np.clip(estimate, 1, 5) - test["rating"].to_numpy()) ** 2)))
    return {
        "ratings": len(train),
        "epochs": epochs,
        "seconds": seconds,
        "ratings_per_second": len(train) * epochs / seconds,
        "rmse": rmse,
    }


def ours(image: str, folder: Path, epochs: int, factors: int, batch: int) -> dict:
    command = [
        "docker", "run", "--rm", "-v", f"{ROOT / 'bench'}:/opt/bench/bench:ro", "-v", f"{folder}:/data:ro",
        "-e", "PYTHONPATH=/opt/bench:/opt/family/src:/opt/family/lib:/opt/byoc/src", "--entrypoint", "python", image,
        "-m", "bench.mxnet_mf_vs_surprise", "--inside", "/data", str(epochs), str(factors), str(batch),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        sys.exit(f"our trainer failed in {image}:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def fixed_cost(image: str, folder: Path, factors: int, environment: dict | None = None) -> dict:
    """A real `train` job (1 epoch, the MF alone) in the /opt/ml harness: seconds from the container's start
    (docker's State.StartedAt) to the log line the trainer prints just before its first batch ("training mf
    on ..." for the autograd loop, "mf kernel: ..." for the large-data loop), from the log's own timestamps;
    and the whole job's wall time."""
    from local.harness import Harness
    from local.opt_ml import ChannelSpec

    lines: list[tuple[str, str]] = []
    started: dict[str, str] = {}

    def follow(containers) -> None:
        container = containers[0]

        def read() -> None:
            for raw in container.logs(stream=True, follow=True, timestamps=True):
                stamp, _, text = raw.decode("utf-8", "replace").partition(" ")
                lines.append((stamp, text))

        container.reload()
        started["at"] = container.attrs["State"]["StartedAt"]
        threading.Thread(target=read, daemon=True).start()

    harness = Harness(Path(tempfile.mkdtemp(prefix="mf-fixed-cost-")))
    hyperparameters = {"epochs": 1, "num_factors": factors, "autorec_units": 0}
    channels = {"train": ChannelSpec(folder / "train")}
    job = harness.train(image, hyperparameters, channels, environment=environment, on_started=follow)
    if not job.ok:
        sys.exit(f"the train job failed:\n{job.logs()[-3000:]}")
    time.sleep(0.5)
    training = next((stamp for stamp, text in lines if text.startswith("training mf on")), None)
    if training is None:
        sys.exit("no 'training mf on' line in the job's log:\n" + job.logs()[-2000:])
    kernel = next(((stamp, text) for stamp, text in lines if text.startswith("mf kernel: ")), None)
    first_batch = kernel[0] if kernel else training
    loaded = re.search(r"loaded in ([0-9.]+) s", kernel[1]) if kernel else None
    return {
        "start_to_first_batch_seconds": _stamp(first_batch) - _stamp(started["at"]),
        "start_to_fit_seconds": _stamp(training) - _stamp(started["at"]),
        "kernel_load_seconds": float(loaded.group(1)) if loaded else None,
        "kernel_line": kernel[1].strip() if kernel else None,
        "environment": environment or {},
        "job_seconds": job.seconds,
        "train_ratings": sum(1 for _ in (folder / "train" / "ratings.dat").open()),
        "what": "docker State.StartedAt to the line the trainer prints just before its first batch ('training mf "
        "on ...': data read, ids indexed; the large-data loop's 'mf kernel: ...': numba imported, the kernel "
        "loaded or compiled, the batches grouped); 1 epoch, autorec_units 0",
    }


def _loop(mine: dict) -> str:
    kernel = f" ({mine['kernel']})" if mine.get("kernel") else ""
    return f"{mine['loop']}{kernel}, batch {mine['batch_size']:,}"


def _best(kept: dict | None, measured: dict) -> dict:
    """The faster run (the same seeds give the same RMSE every round); every round's ratings/s kept."""
    rounds = (kept or {}).get("rounds_ratings_per_second", []) + [measured["ratings_per_second"]]
    best = measured if kept is None or measured["ratings_per_second"] > kept["ratings_per_second"] else kept
    return {**best, "rounds_ratings_per_second": rounds}


def _stamp(text: str) -> float:
    """RFC 3339 with nanoseconds (docker) -> POSIX seconds."""
    head, _, fraction = text.strip().rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float("0." + (fraction or "0")[:6])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--inside":
        inside(args[1], int(args[2]), int(args[3]), int(args[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--factors", type=int, default=64, help="both: our default (Surprise's is 100)")
    parser.add_argument("--batch", type=int, default=0, help="our mini_batch_size (default: the trainer's choice)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per size (best ratings/s)")
    parser.add_argument("--image", default=None, help="default: ./build.sh build mxnet-mf")
    parser.add_argument("--no-fixed-cost", action="store_true", help="skip the train job measuring the fixed cost")
    args = parser.parse_args(args)
    if args.image is None:
        from tests.images import build_image

        args.image = build_image("mxnet-mf")
    work = Path(tempfile.mkdtemp(prefix="bench-mf-vs-surprise-"))
    rows, results = [], {}
    for name in args.sizes:
        count, users, items, epochs = SIZES[name]
        folder, split = write_data(work, count, users, items)
        theirs = mine = None
        for _ in range(args.rounds):  # alternating, so a busy neighbour slows both alike; the best of each
            measured = surprise(folder, epochs, args.factors)
            theirs = _best(theirs, measured)
            mine = _best(mine, ours(args.image, folder, epochs, args.factors, args.batch))
        results[name] = {"shape": [users, items], "split": split, "surprise_svd": theirs, "ours": mine}
        ratio = mine["ratings_per_second"] / theirs["ratings_per_second"]
        rows.append([name, f"{users:,} x {items:,}", f"{mine['ratings']:,}", epochs,
                     f"{theirs['ratings_per_second']:,.0f}", f"{mine['ratings_per_second']:,.0f}", f"{ratio:.2f}x",
                     f"{theirs['rmse']:.4f}", f"{mine['rmse']:.4f}", _loop(mine),
                     f"{mine['seconds']:.1f} / {theirs['seconds']:.1f}"])  # fmt: skip
        print(json.dumps({name: results[name]}), flush=True)
    wins = {
        name: r["ours"]["ratings_per_second"] >= r["surprise_svd"]["ratings_per_second"]
        and r["ours"]["rmse"] <= r["surprise_svd"]["rmse"]
        for name, r in results.items()
    }
    crossover = next(
        (name for index, name in enumerate(args.sizes) if all(wins[later] for later in args.sizes[index:])), None
    )
    goal_sizes = [name for name in args.sizes if SIZES[name][0] >= GOAL_FROM]
    met = bool(goal_sizes) and all(wins[name] for name in goal_sizes)
    print(f"\n## MF training, {args.factors} factors: Surprise SVD (host) against our trainer (byoc-mxnet-mf image)\n")
    print("Training ratings/s = training ratings x epochs / fit seconds, data loading excluded on both sides.\n")
    headers = ["size", "users x items", "train ratings", "epochs", "Surprise ratings/s", "ours ratings/s",
               "ours / Surprise", "Surprise RMSE", "ours RMSE", "our loop", "fit s ours / Surprise"]  # fmt: skip
    print(markdown_table(headers, rows))
    print(f"\ncrossover (ours faster at no worse RMSE from this size up): {crossover or 'none of the sizes'}")
    loads = [f"{r['ours']['kernel_load_seconds']:.2f} s at {name}" for name, r in results.items()
             if r["ours"].get("kernel_load_seconds") is not None]  # fmt: skip
    if loads:
        print(
            f"our compiled kernel's load (numba's import, its cached code), not in the fit seconds: {', '.join(loads)}"
        )
    fixed = None
    if not args.no_fixed_cost:
        from mxnet_mf.train import LARGE_DATA

        smallest = min(args.sizes, key=lambda name: SIZES[name][0])
        large = min(
            (name for name in args.sizes if SIZES[name][0] * 0.9 >= LARGE_DATA), key=lambda n: SIZES[n][0], default=None
        )
        fixed = {f"{smallest} (autograd loop)": fixed_cost(args.image, work / f"{SIZES[smallest][0]}", args.factors)}
        if large:
            folder = work / f"{SIZES[large][0]}"
            fixed[f"{large} (large-data loop)"] = fixed_cost(args.image, folder, args.factors)
            fixed[f"{large} (large-data loop, no numba cache)"] = fixed_cost(
                args.image, folder, args.factors, {"BYOC_MF_KERNEL_NO_CACHE": "1"}
            )
        for name, cost in fixed.items():
            kernel = (
                f"; kernel loaded or compiled in {cost['kernel_load_seconds']:.2f} s" if cost["kernel_line"] else ""
            )
            print(
                f"fixed cost of a train job, {name}, {cost['train_ratings']:,} ratings: container start to first "
                f"batch {cost['start_to_first_batch_seconds']:.2f} s (to the fit {cost['start_to_fit_seconds']:.2f} s"
                f"{kernel}); the whole 1-epoch job {cost['job_seconds']:.1f} s"
            )
    print(f"goal: ours >= Surprise's ratings/s at no worse RMSE from 1M ratings up: {'met' if met else 'NOT met'}")
    command = " ".join(["python -m bench.mxnet_mf --vs-surprise", *(argv if argv is not None else sys.argv[1:])])
    summary = {
        "image": args.image,
        "factors": args.factors,
        "batch": args.batch or "trainer's choice",
        "rounds": args.rounds,
        "measure": "training ratings x epochs / fit seconds; data loading excluded on both sides",
        "sizes": results,
        "crossover": crossover,
        "fixed_cost": fixed,
        "goal": "ours >= Surprise's ratings/s at no worse held-out RMSE, from 1M ratings up",
        "met": met,
    }
    name = "mxnet_mf_vs_surprise" if not args.batch else f"mxnet_mf_vs_surprise_batch{args.batch}"
    path = save(name, summary, command.strip())
    print(f"saved {path.relative_to(ROOT)}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
