"""Factorization machines: the course's MNIST "is it a 0" job on the full data set (60,000 / 10,000), the
course's setting and ours, confusion matrices beside the course's; and training throughput on sparse
one-hot data with 10^5 features, our sparse batch layout against the compact-dense layout in the same run.

In-process: the image's own trainer (fm_algo.engine.FMTrainer) and batching, without docker, so the figures
are the algorithm's, not the container's start-up.  `python -m bench.fm [--mnist-dir DIR] [--quick]`
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.machine import save
from fm_algo import scoring, spec
from fm_algo.data import CsrData
from fm_algo.engine import FMTrainer
from fm_client import evaluate, mnist

COURSE = {"true_positives": 951, "false_positives": 165, "false_negatives": 29, "f1": 0.907}
COURSE_HP = {"feature_dim": 784, "num_factors": 10, "predictor_type": "binary_classifier", "mini_batch_size": 200}
# Ours: more epochs and learning rates 10x / 100x the built-in's defaults (tuned on the training set only).
BEST_HP = {**COURSE_HP, "epochs": 10, "linear_lr": 0.01, "factors_lr": 0.01, "factors_init_sigma": 0.01}


def fit(hp: dict, data: CsrData, layout: str = "auto", max_steps: int | None = None) -> tuple[FMTrainer, float, int]:
    """The train loop of fm_algo.train (shuffle per epoch, mini-batches); returns trainer, seconds, examples."""
    hp = spec.parse(hp)
    trainer = FMTrainer(hp, layout=layout)
    size, examples, steps = hp["mini_batch_size"], 0, 0
    started = time.perf_counter()
    for epoch in range(hp["epochs"]):
        order = np.random.default_rng(epoch).permutation(len(data))
        for start in range(0, len(data), size):
            batch = data.take(order[start : start + size])
            trainer.step(batch)
            examples, steps = examples + len(batch), steps + 1
            if max_steps and steps >= max_steps:
                return trainer, time.perf_counter() - started, examples
    return trainer, time.perf_counter() - started, examples


def mnist_runs(directory: Path) -> list[dict]:
    x, y = mnist.load_binary(directory, "train")
    tx, ty = mnist.load_binary(directory, "test")
    train, test = CsrData.from_dense(x, y), CsrData.from_dense(tx, ty)
    runs = []
    fit(COURSE_HP, train, max_steps=100)  # warm-up: page faults, BLAS start-up; not measured
    for name, hp in (("course setting (epochs=1, built-in lr defaults)", COURSE_HP), ("ours", BEST_HP)):
        trainer, seconds, examples = fit(hp, train)
        scores = trainer.model().scores(test)
        report = evaluate.classification_report(ty, (scores >= 0.5).astype(np.float64))
        report["cross_entropy"] = scoring.binary_metrics(scores, ty)["binary_classification_cross_entropy"]
        runs.append(
            {"setting": name, "hyperparameters": hp, "train_s": seconds, "examples_per_s": examples / seconds, **report}
        )
    return runs


def one_hot_sparse(rows: int, users: int, items: int, seed: int = 0) -> CsrData:
    """MovieLens-shaped rows: one user column + one item column out of users + items = 10^5 features."""
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, users, rows), users + rng.integers(0, items, rows)
    indices = np.stack([u, i], axis=1).ravel()
    labels = rng.integers(1, 6, rows).astype(np.float32)
    return CsrData(np.arange(0, 2 * rows + 1, 2), indices, np.ones(2 * rows, np.float32), labels, users + items)


def sparse_throughput(quick: bool) -> list[dict]:
    data = one_hot_sparse(200_000 if not quick else 50_000, users=40_000, items=60_000)
    out = []
    for k in (10, 64):
        hp = {"feature_dim": data.num_cols, "num_factors": k, "predictor_type": "regressor", "mini_batch_size": 1000}
        fit(hp, data, "sparse", max_steps=20)  # warm-up
        for layout in ("sparse", "dense"):
            _, seconds, examples = fit(hp, data, layout, max_steps=20 if layout == "dense" else None)
            out.append({"num_factors": k, "layout": layout, "examples_per_s": examples / seconds})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mnist")
    parser.add_argument("--quick", action="store_true", help="50k sparse rows instead of 200k")
    args = parser.parse_args()

    runs = mnist_runs(args.mnist_dir)
    print("\n## MNIST 'is it a 0', full test set (10,000 images)\n")
    print("| setting | TP | FP | FN | TN | precision | recall | F1 | accuracy | train s | examples/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| the course (built-in FM) | {COURSE['true_positives']} | {COURSE['false_positives']} | "
        f"{COURSE['false_negatives']} | | | | {COURSE['f1']:.3f} | | | |"
    )
    for r in runs:
        print(
            f"| {r['setting']} | {r['true_positives']} | {r['false_positives']} | {r['false_negatives']} | "
            f"{r['true_negatives']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | "
            f"{r['accuracy']:.4f} | {r['train_s']:.1f} | {r['examples_per_s']:,.0f} |"
        )

    sparse = sparse_throughput(args.quick)
    print("\n## Training throughput, one-hot user + item rows, 10^5 features, mini_batch_size 1000\n")
    print("| num_factors | batch layout | examples/s | ratio vs compact-dense |")
    print("|---|---|---|---|")
    for r in sparse:
        reference = next(s for s in sparse if s["num_factors"] == r["num_factors"] and s["layout"] == "dense")
        r["ratio_vs_dense"] = r["examples_per_s"] / reference["examples_per_s"]
        print(f"| {r['num_factors']} | {r['layout']} | {r['examples_per_s']:,.0f} | {r['ratio_vs_dense']:.1f}x |")

    path = save("fm", {"mnist": runs, "course": COURSE, "sparse_throughput": sparse}, "python -m bench.fm")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
