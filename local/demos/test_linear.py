"""The runtime's test family: ridge regression on generated CSV (y = x @ [1, 2, 3] + 0.5 + noise)."""

from pathlib import Path

import numpy as np

from local.demo import Demo, Request


def make(workdir: Path) -> Demo:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = x @ [1.0, 2.0, 3.0] + 0.5 + rng.normal(scale=0.05, size=500)
    np.savetxt(workdir / "train.csv", np.c_[y[:400], x[:400]], delimiter=",")
    np.savetxt(workdir / "batch.csv", x[:50], delimiter=",")
    (workdir / "test").mkdir()
    np.savetxt(workdir / "test" / "test.csv", np.c_[y[400:], x[400:]], delimiter=",")
    return Demo(
        family="test-linear",
        inputs={"train": (workdir / "train.csv", "text/csv"), "test": (workdir / "test", "text/csv")},
        hyperparameters={"l2": 0.01},
        requests=[
            Request("JSON instances [[1,0,0],[0,0,1]] (expect 1.5, 3.5)", {"instances": [[1, 0, 0], [0, 0, 1]]}),
            Request("CSV row 0,1,0 (expect 2.5)", "0,1,0", content_type="text/csv"),
        ],
        metric_names=["train_mse", "test_mse"],
        transform=Request("50 CSV rows -> JSON Lines", workdir / "batch.csv", "text/csv", "application/jsonlines"),
    )
