"""mxnet-mf: matrix factorization on generated MovieLens-format ratings (ML-100K's shape, a planted
low-rank structure and planted look-alike movies), then ratings, recommendations and similar movies."""

import json
from pathlib import Path

from local.demo import Demo, Request
from mxnet_mf import synthetic


def make(workdir: Path) -> Demo:
    ratings = synthetic.generate(
        num_users=400, num_items=600, num_ratings=30000, rank=8, noise=0.4, factor_scale=1.0, planted_pairs=3, seed=11
    )
    train, test = ratings.split(0.2, seed=0)
    train.write(workdir / "train" / "ua.base", "u.data")
    test.write(workdir / "test" / "ua.test", "u.data")
    ratings.write_titles(workdir / "items" / "u.item", "u.item")
    user, item = int(test.users[0]), int(test.items[0])
    twin, its_twin = ratings.twins[0]
    batch = workdir / "batch.jsonl"
    batch.write_text(
        "".join(
            json.dumps({"user_id": int(u), "item_id": int(i)}) + "\n"
            for u, i in zip(test.users[:100], test.items[:100], strict=True)
        )
    )
    return Demo(
        family="mxnet-mf",
        inputs={name: workdir / name for name in ("train", "test", "items")},
        hyperparameters={"model": "mf", "num_factors": 32, "epochs": 15, "learning_rate": 0.01, "l2": 0.05},
        requests=[
            Request(
                f"Object2Vec shape: user {user} x movie {item} (rated {test.ratings[0]:g})",
                {"instances": [{"in0": [user], "in1": [item]}]},
            ),
            Request(f"top 3 movies for user {user}", {"instances": [{"user_id": user, "k": 3}]}),
            Request(
                f"movie most like {twin} (planted look-alike: {its_twin})", {"instances": [{"item_id": twin, "k": 1}]}
            ),
        ],
        metric_names=["validation_rmse", "validation_baseline_rmse", "train_rmse"],
        transform=Request(
            "100 JSON Lines (user, movie) -> ratings", batch, "application/jsonlines", "application/jsonlines"
        ),
    )
