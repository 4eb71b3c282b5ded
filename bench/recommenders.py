"""Our recommenders beside the baselines, on one MovieLens-format data set, every figure of ours through a
served endpoint of the image trained with its default hyperparameters.

    python -m bench.recommenders --data .data/ml-latest-small [--only cold-start rating ranking] [--seed 0]
                                 [--image-mf byoc-mxnet-mf:<version>-cpu] [--image-ncf byoc-ncf-tf:<version>-cpu]

`--data`: a folder with ratings (ml-latest-small's ratings.csv, or ML-100K's u.data) and item features
(movies.csv, or u.item). Not in the repository: MovieLens may not be redistributed; fetch it into a
git-ignored folder. Three protocols, one table each:

- cold-start: 10 % of the items (drawn with --seed) are removed from training entirely: their ratings from
  the ratings channel, their rows from the items channel. mxnet-mf `model=dssm` trains on the rest, is served,
  and the cold items are then added to the running endpoint by their features (`"task": "add_item"`). Each
  liked (>= 4) rating of a cold item by a user seen in training is ranked among 100 cold items that user did
  not rate; the endpoint's pair scores rank them (`--set name=value` trains the DSSM off its defaults: not
  the goal's protocol). Beside it, on the same candidates: popularity-by-genre (a cold item scores the mean,
  over its genres, of how many liked ratings an item of that genre got in training), the user's own genre
  affinity (the share of the user's liked training items in the item's genres), and random. Baselines' ties
  are broken at random. Goal: DSSM HR@10 >= 1.5x popularity-by-genre's.
- rating: a random 80/20 split of the ratings (--seed); RMSE of mxnet-mf's default model (served), Surprise's
  SVD and SVD++ (if scikit-surprise is installed here), the item-mean and global-mean baselines.
- ranking: leave-latest-out (ncf_tf.evaluation): each user's latest rating held out and ranked among 100 items
  the user never rated; HR@10 / NDCG@10 of ncf-tf (served, bench.ncf_quality's run), mxnet-mf's DSSM (served,
  trained on the same training ratings), popularity and random.
Prints the tables, saves bench/results/recommenders.json (a run of some sections keeps the others' last
results for the same data and seed; each section records its command), exits 1 when the cold-start goal is
missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import bench  # noqa: F401 - puts containers/*/src on sys.path
from bench.machine import RESULTS, markdown_table, save

COLD_SHARE, CANDIDATES, K, LIKED = 0.1, 100, 10, 4.0
GOAL_RATIO = 1.5
CHUNK = 1000


# ---------------------------------------------------------------------- data
def load(data: Path) -> tuple[np.ndarray, Path, str]:
    """(ratings (n, 4): user, item, rating, timestamp), the item file, its name."""
    if (data / "ratings.csv").exists():
        ratings = np.loadtxt(data / "ratings.csv", delimiter=",", skiprows=1, ndmin=2)
    elif (data / "u.data").exists():
        ratings = np.loadtxt(data / "u.data", ndmin=2)
    else:
        raise SystemExit(f"{data}: no ratings.csv or u.data")
    items = next((data / name for name in ("movies.csv", "u.item") if (data / name).exists()), None)
    if items is None:
        raise SystemExit(f"{data}: no movies.csv or u.item (the items' features)")
    return ratings, items, items.name


def item_rows(path: Path) -> tuple[list, list[dict]]:
    from mxnet_mf.item_features import parse_item_rows

    blob = path.read_bytes()
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        text = blob.decode("latin-1")
    return parse_item_rows([(path.name, text)])


def write_ratings(path: Path, ratings: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{int(u)},{int(i)},{r:g},{int(t)}" for u, i, r, t in ratings.tolist()]
    path.write_text("userId,movieId,rating,timestamp\n" + "\n".join(lines) + "\n")


def write_items(path: Path, ids: list, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"item_id": i, **row}) + "\n" for i, row in zip(ids, rows, strict=True)))


def ranked(scores: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, float]:
    """HR@K / NDCG@K of (n, 1 + candidates) scores, column 0 the positive; with rng, ties are broken at random
    (a tiny jitter), else they count against the positive."""
    from ncf_tf.evaluation import ranking_metrics

    if rng is not None:
        scores = scores + rng.random(scores.shape) * 1e-9 * max(1.0, float(np.abs(scores).max()))
    return {**ranking_metrics(scores, K), "cases": len(scores)}


def served_pair_scores(endpoint, users: np.ndarray, items: np.ndarray, key: str) -> np.ndarray:
    out = []
    for start in range(0, len(users), CHUNK):
        pairs = zip(users[start : start + CHUNK].tolist(), items[start : start + CHUNK].tolist(), strict=True)
        body = {"instances": [{"user_id": int(u), "item_id": int(i)} for u, i in pairs]}
        response = endpoint.invoke(json.dumps(body))
        response.raise_for_status()
        out += [answer[key] for answer in response.json()["predictions"]]
    return np.array(out, dtype=np.float64)


# ---------------------------------------------------------------------- cold start
def genre_table(ids: list, rows: list[dict]) -> dict:
    from mxnet_mf.dssm import id_key
    from mxnet_mf.item_features import words_of

    return {id_key(i): [w for w in words_of(row) if w.startswith("genre:")] for i, row in zip(ids, rows, strict=True)}


def cold_start(ratings: np.ndarray, items_path: Path, image: str, seed: int, work: Path, extra: dict) -> dict:
    from local.harness import Harness
    from local.opt_ml import ChannelSpec

    ids, rows = item_rows(items_path)
    rng = np.random.default_rng(seed)
    all_ids = np.unique(np.concatenate([np.array(ids, dtype=np.int64), ratings[:, 1].astype(np.int64)]))
    cold = set(rng.choice(all_ids, int(round(len(all_ids) * COLD_SHARE)), replace=False).tolist())
    is_cold = np.isin(ratings[:, 1].astype(np.int64), list(cold))
    train, test = ratings[~is_cold], ratings[is_cold]
    keep = [n for n, i in enumerate(ids) if i not in cold]
    cold_rows = [n for n, i in enumerate(ids) if i in cold]
    write_ratings(work / "cold" / "train" / "ratings.csv", train)
    write_items(work / "cold" / "items" / "items.jsonl", [ids[n] for n in keep], [rows[n] for n in keep])
    harness = Harness(work / "harness-cold")
    started = time.perf_counter()
    channels = {name: ChannelSpec(work / "cold" / name) for name in ("train", "items")}
    job = harness.train(image, {"model": "dssm", **extra}, channels, timeout=1800)
    seconds = time.perf_counter() - started
    if not job.ok:
        raise SystemExit(f"dssm training failed: {job.master.failure}\n{job.logs()[-3000:]}")

    # the cases: liked cold ratings of users seen in training, each with 100 cold items the user did not rate
    cold_ids = np.array(sorted(cold), dtype=np.int64)
    trained_users = set(train[:, 0].astype(np.int64).tolist())
    rated = {}
    for u, i in test[:, :2].astype(np.int64).tolist():
        rated.setdefault(u, set()).add(i)
    cases = []
    for u, i, r, _ in test.tolist():
        if r >= LIKED and int(u) in trained_users:
            unrated = cold_ids[~np.isin(cold_ids, list(rated[int(u)]))]
            if len(unrated) >= CANDIDATES:
                cases.append((int(u), [int(i), *rng.choice(unrated, CANDIDATES, replace=False).tolist()]))
    users = np.array([u for u, _ in cases], dtype=np.int64)
    candidates = np.array([c for _, c in cases], dtype=np.int64)

    with harness.serve(image, job.model_archive) as endpoint:
        added = []
        for start in range(0, len(cold_rows), CHUNK):
            chunk = cold_rows[start : start + CHUNK]
            body = {"instances": [{"task": "add_item", "item_id": ids[n], **rows[n]} for n in chunk]}
            response = endpoint.invoke(json.dumps(body))
            response.raise_for_status()
            added += response.json()["predictions"]
        started_scoring = time.perf_counter()
        dssm = served_pair_scores(endpoint, np.repeat(users, candidates.shape[1]), candidates.ravel(), "score")
        scoring_seconds = time.perf_counter() - started_scoring
    dssm = dssm.reshape(candidates.shape)

    # baselines on the same candidates
    genres = genre_table(ids, rows)
    liked_train = train[train[:, 2] >= LIKED]
    per_genre_likes: dict[str, int] = {}
    for i in liked_train[:, 1].astype(np.int64).tolist():
        for g in genres.get(i, []):
            per_genre_likes[g] = per_genre_likes.get(g, 0) + 1
    per_genre_items: dict[str, int] = {}
    for n in keep:
        for g in genres.get(ids[n], []):
            per_genre_items[g] = per_genre_items.get(g, 0) + 1
    average = {g: per_genre_likes.get(g, 0) / count for g, count in per_genre_items.items()}

    def popularity_by_genre(item: int) -> float:
        gs = genres.get(item, [])
        return float(np.mean([average.get(g, 0.0) for g in gs])) if gs else 0.0

    affinity: dict[int, dict[str, float]] = {}
    for u, i in liked_train[:, :2].astype(np.int64).tolist():
        counts = affinity.setdefault(u, {})
        for g in genres.get(i, []):
            counts[g] = counts.get(g, 0) + 1

    def user_genre(user: int, item: int) -> float:
        gs = genres.get(item, [])
        return float(np.mean([affinity.get(user, {}).get(g, 0) for g in gs])) if gs else 0.0

    pop = np.vectorize(popularity_by_genre)(candidates)
    own = np.array(
        [[user_genre(u, i) for i in row] for u, row in zip(users.tolist(), candidates.tolist(), strict=True)]
    )
    tie_rng = np.random.default_rng(seed + 1)
    table = {
        "dssm (served)": ranked(dssm),
        "popularity-by-genre": ranked(pop, tie_rng),
        "user's genre affinity": ranked(own, tie_rng),
        "random": ranked(tie_rng.random(candidates.shape)),
    }
    known = [a["known_words"] for a in added]
    return {
        "protocol": f"{len(cold)} cold items of {len(all_ids)}, {len(train)} training ratings, {len(cases)} cases",
        "rows": table,
        "train_job_s": seconds,
        "scoring_pairs_per_s": candidates.size / scoring_seconds,
        "cold_items_added": len(added),
        "cold_items_mean_known_words": float(np.mean(known)) if known else 0.0,
        "ratio_to_popularity_by_genre": table["dssm (served)"]["hr_at_10"]
        / max(table["popularity-by-genre"]["hr_at_10"], 1e-9),
    }


# ---------------------------------------------------------------------- rating
def rating(ratings: np.ndarray, image: str, seed: int, work: Path) -> dict:
    from local.harness import Harness
    from local.opt_ml import ChannelSpec

    order = np.random.default_rng(seed).permutation(len(ratings))
    cut = int(len(order) * 0.8)
    train, test = ratings[np.sort(order[:cut])], ratings[np.sort(order[cut:])]
    write_ratings(work / "rating" / "train" / "ratings.csv", train)
    harness = Harness(work / "harness-rating")
    started = time.perf_counter()
    job = harness.train(image, {}, {"train": ChannelSpec(work / "rating" / "train")}, timeout=1800)
    seconds = time.perf_counter() - started
    if not job.ok:
        raise SystemExit(f"mxnet-mf training failed: {job.master.failure}\n{job.logs()[-3000:]}")
    truth = test[:, 2]
    rows = {}
    with harness.serve(image, job.model_archive) as endpoint:
        predicted = []
        for start in range(0, len(test), CHUNK):
            chunk = test[start : start + CHUNK]
            body = {"instances": [{"user_id": int(u), "item_id": int(i)} for u, i in chunk[:, :2].tolist()],
                    "unknown_ids": "fallback"}  # fmt: skip
            response = endpoint.invoke(json.dumps(body))
            response.raise_for_status()
            predicted += [answer["rating"] for answer in response.json()["predictions"]]
    rows["mxnet-mf mf (served)"] = {"rmse": _rmse(np.array(predicted), truth), "train_s": seconds}
    mean = float(train[:, 2].mean())
    rows["global mean"] = {"rmse": _rmse(np.full(len(test), mean), truth)}
    item_sum, item_count = {}, {}
    for i, r in train[:, 1:3].tolist():
        item_sum[i] = item_sum.get(i, 0.0) + r
        item_count[i] = item_count.get(i, 0) + 1
    item_mean = np.array([item_sum[i] / item_count[i] if i in item_count else mean for i in test[:, 1].tolist()])
    rows["item mean"] = {"rmse": _rmse(item_mean, truth)}
    rows.update(_surprise(train, test))
    return {"protocol": f"random 80/20 split (seed {seed}): {len(train)} / {len(test)} ratings", "rows": rows}


def _surprise(train: np.ndarray, test: np.ndarray) -> dict:
    try:
        import pandas as pd
        from surprise import SVD, Dataset, Reader, SVDpp
    except ImportError:
        return {}
    frame = pd.DataFrame(train[:, :3], columns=["user", "item", "rating"])
    low, high = float(train[:, 2].min()), float(train[:, 2].max())
    trainset = Dataset.load_from_df(frame, Reader(rating_scale=(low, high))).build_full_trainset()
    rows = {}
    for name, algorithm in (("Surprise SVD", SVD(random_state=0)), ("Surprise SVD++", SVDpp(random_state=0))):
        started = time.perf_counter()
        algorithm.fit(trainset)
        seconds = time.perf_counter() - started
        predicted = np.array([algorithm.predict(u, i).est for u, i in test[:, :2].tolist()])
        rows[name] = {"rmse": _rmse(predicted, test[:, 2]), "train_s": seconds}
    return rows


def _rmse(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - truth) ** 2)))


# ---------------------------------------------------------------------- ranking
def ranking(data: Path, ratings: np.ndarray, items_path: Path, mf_image: str, ncf_image: str | None, seed: int,
            work: Path) -> dict:  # fmt: skip
    from local.harness import Harness
    from local.opt_ml import ChannelSpec
    from ncf_tf import evaluation

    protocol = evaluation.leave_latest_out(data, seed=seed)
    rows = {}
    if ncf_image:
        from bench import ncf_quality

        run = ncf_quality.measure(ncf_image, data, [seed], {})[0]
        rows["ncf-tf NeuMF (served)"] = {"hr_at_10": run["served_hr_at_10"], "ndcg_at_10": run["served_ndcg_at_10"],
                                         "train_s": run["job_seconds_with_container"]}  # fmt: skip
    # DSSM on the same training ratings (the held-out latest ones removed) and all items' features
    held = {
        (int(u), int(i)) for u, i in zip(protocol.user_ids.tolist(), protocol.candidate_ids[:, 0].tolist(), strict=True)
    }
    keep = np.array([(int(u), int(i)) not in held for u, i in ratings[:, :2].tolist()])
    write_ratings(work / "ranking" / "train" / "ratings.csv", ratings[keep])
    ids, item_fields = item_rows(items_path)
    write_items(work / "ranking" / "items" / "items.jsonl", ids, item_fields)
    harness = Harness(work / "harness-ranking")
    started = time.perf_counter()
    channels = {name: ChannelSpec(work / "ranking" / name) for name in ("train", "items")}
    job = harness.train(mf_image, {"model": "dssm"}, channels, timeout=1800)
    seconds = time.perf_counter() - started
    if not job.ok:
        raise SystemExit(f"dssm training failed: {job.master.failure}\n{job.logs()[-3000:]}")
    with harness.serve(mf_image, job.model_archive) as endpoint:
        scores = evaluation.score_candidates(
            protocol, lambda users, items: served_pair_scores(endpoint, users, items, "score"), users_per_call=9
        )
    rows["mxnet-mf dssm (served)"] = {**ranked(scores), "train_s": seconds}
    tie_rng = np.random.default_rng(seed + 1)
    rows["popularity"] = ranked(protocol.popularity_scores(), tie_rng)
    rows["random"] = ranked(tie_rng.random(protocol.candidate_ids.shape))
    return {"protocol": f"leave-latest-out, {len(protocol.user_ids)} users, 1 + 100 candidates", "rows": rows}


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    from tests.images import build_image

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--only", nargs="+", choices=("cold-start", "rating", "ranking"),
                        default=["cold-start", "rating", "ranking"])  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="a DSSM hyperparameter off its default (cold-start only; not the goal's protocol)",
    )
    parser.add_argument("--image-mf", default=None)
    parser.add_argument(
        "--image-ncf",
        default=None,
        help="default: ./build.sh's byoc-ncf-tf CPU tag (built if needed); 'none' skips ncf-tf",
    )
    args = parser.parse_args(argv)
    mf_image = args.image_mf or build_image("mxnet-mf")
    ncf_image = None if args.image_ncf == "none" else args.image_ncf or build_image("ncf-tf")
    ratings, items_path, _ = load(args.data)
    work = Path(tempfile.mkdtemp(prefix="bench-recommenders-"))
    command = "python -m bench.recommenders " + " ".join(sys.argv[1:] if argv is None else argv)
    results: dict = {"data": args.data.name, "ratings": len(ratings), "seed": args.seed}
    # A run of some sections keeps the others' last results on the same data and seed (each says its command).
    saved = RESULTS / "recommenders.json"
    if saved.exists():
        previous = json.loads(saved.read_text())
        if (previous.get("data"), previous.get("seed")) == (results["data"], args.seed):
            results.update({k: v for k, v in previous.items() if k in ("cold_start", "rating", "ranking")})
    if "cold-start" in args.only:
        extra = dict(item.split("=", 1) for item in args.set)
        results["cold_start"] = cold_start(ratings, items_path, mf_image, args.seed, work, extra)
        results["cold_start"]["hyperparameters"] = extra or "defaults"
        results["cold_start"]["command"] = command
    if "rating" in args.only:
        results["rating"] = {**rating(ratings, mf_image, args.seed, work), "command": command}
    if "ranking" in args.only:
        results["ranking"] = {**ranking(args.data, ratings, items_path, mf_image, ncf_image, args.seed, work),
                              "command": command}  # fmt: skip
    for section, metrics in (("rating", ("rmse", "train_s")), ("ranking", ("hr_at_10", "ndcg_at_10", "train_s")),
                             ("cold_start", ("hr_at_10", "ndcg_at_10", "cases"))):  # fmt: skip
        if section not in results:
            continue
        print(f"\n{section}: {results[section]['protocol']}\n")
        table = [[name] + [_cell(row.get(m)) for m in metrics] for name, row in results[section]["rows"].items()]
        print(markdown_table(["model", *metrics], table))
    status = 0
    if "cold_start" in results:
        ratio = results["cold_start"]["ratio_to_popularity_by_genre"]
        met = ratio >= GOAL_RATIO
        print(f"\ncold start: DSSM HR@10 = {ratio:.2f}x popularity-by-genre's (goal >= {GOAL_RATIO}): "
              f"{'met' if met else 'NOT met'}")  # fmt: skip
        status = 0 if met else 1
    print(f"saved {save('recommenders', results, command)}")
    return status


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.1f}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
