"""NeuMF on generated MovieLens-format ratings (u.data, planted taste groups): leave-one-out HR@10 / NDCG@10
against the popularity baseline, TF-Serving-style requests, top-k, and a CSV batch transform."""

from pathlib import Path

import numpy as np

from local.demo import Demo, Request


def make(workdir: Path) -> Demo:
    from ncf_tf import synthetic  # numpy only, no TensorFlow
    rows = synthetic.planted_ratings(n_users=200, n_items=300, seed=0)
    synthetic.write(rows, workdir / "ratings", "u.data")
    pairs = np.random.default_rng(0).integers(0, 200, size=(50, 2))
    np.savetxt(workdir / "batch.csv", pairs, fmt="%d", delimiter=",")
    return Demo(
        family="ncf-tf",
        inputs={"training": workdir / "ratings"},
        hyperparameters={"epochs": 6, "pretrain": False, "batch_size": 128},
        requests=[
            Request('instances form, indices {"input_1": 0, "input_2": 5}',
                    {"instances": [{"input_1": 0, "input_2": 5}, {"input_1": 3, "input_2": 7}]}),
            Request('inputs form {"inputs": {"input_1": [0, 3], "input_2": [5, 7]}} (same answer)',
                    {"inputs": {"input_1": [0, 3], "input_2": [5, 7]}}),
            Request("raw MovieLens ids user 1 / item 6", {"instances": [{"user_id": 1, "item_id": 6}]}),
            Request("top 5 for user id 7", {"instances": [{"user_id": 7, "top_k": 5}]}),
        ],
        metric_names=["hr_at_10", "ndcg_at_10", "popularity_hr_at_10", "test_auc", "train_examples_per_second"],
        transform=Request("50 CSV user,item rows -> CSV scores", workdir / "batch.csv", "text/csv", "text/csv"),
    )
