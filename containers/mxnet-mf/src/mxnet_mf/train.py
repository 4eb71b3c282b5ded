"""Training entry (BYOC_TRAIN=mxnet_mf.train:train): MovieLens ratings in, a recommender model out.

Channels: train (required), test or validation (optional: per-epoch validation RMSE), items (optional:
titles). On several hosts every host trains on its shard of the ratings through a dist_sync kvstore and
only the master (hosts[0]) writes the model and the checkpoints.
"""

from __future__ import annotations

import logging

import numpy as np

from byoc_runtime import atomic, cpu, distributed, interrupt
from byoc_runtime.errors import DataError, HyperparameterError
from byoc_runtime.hyperparameters import Param, validate
from byoc_runtime.metrics import log_metric, write_metrics
from byoc_runtime.training_env import TrainingEnv

from .data import IdIndex, read_ratings, read_titles, titles_for
from .recommender import Recommender, rated_csr

log = logging.getLogger(__name__)

# Defaults chosen for MovieLens-100K-sized data (943 users x 1682 items, 100k ratings); see the README.
SPEC = {
    "model": Param(str, "mf", choices=("mf", "deep", "mlp"), help="mf: dot product + biases; deep: MLP; mlp: Lab 3"),
    "num_factors": Param(int, 64, min=1, max=4096, help="embedding size of users and items"),
    "epochs": Param(int, 20, min=1, max=10000, help="passes over the training ratings"),
    "mini_batch_size": Param(int, 256, min=1, max=1_000_000, help="ratings per step, summed over all hosts"),
    "learning_rate": Param(float, 0.002, min=1e-8, max=10.0, help="optimizer step size"),
    "wd": Param(float, 0.0, min=0.0, max=1.0, help="L2 weight decay on every parameter, every step"),
    "l2": Param(float, 0.1, min=0.0, max=100.0, help="L2 on each rating's user and item rows (Funk SVD)"),
    "optimizer": Param(
        str, "adam", choices=("adam", "sgd", "nag", "adagrad", "rmsprop", "adadelta"), help="sgd/nag use momentum 0.9"
    ),
    "hidden_units": Param(list, [64, 32], min=1, max=65536, help="deep: units per hidden layer; mlp: the first one"),
    "dropout": Param(float, 0.0, min=0.0, max=0.95, help="deep: dropout after each hidden layer"),
    "seed": Param(int, 0, min=0, max=2**31 - 1, help="initialisation and shuffling"),
    "kvstore": Param(
        str,
        "auto",
        choices=("auto", "local", "device", "dist_sync", "dist_device_sync", "dist_async"),
        help="auto: local, device (several GPUs), dist_sync (several hosts)",
    ),
}


def train(env: TrainingEnv) -> None:
    hp = validate(env.hyperparameters, SPEC)
    for units in hp["hidden_units"]:
        if not isinstance(units, int):
            raise HyperparameterError("hidden_units", f"expected whole numbers of units, got {units!r}")
    if hp["mini_batch_size"] < len(env.hosts):
        raise HyperparameterError("mini_batch_size", f"must be at least the number of hosts ({len(env.hosts)})")
    interrupt.cooperate()

    train_table = read_ratings(env.channel("train"))
    validation_channel = env.channel("test", required=False) or env.channel("validation", required=False)
    validation = read_ratings(validation_channel) if validation_channel is not None else None
    items_channel = env.channel("items", required=False)
    titles = read_titles(items_channel) if items_channel is not None else None

    user_index, users = IdIndex.build(train_table.users)
    item_index, items = IdIndex.build(train_table.items)
    ratings = train_table.ratings
    global_mean = float(ratings.mean())
    print(
        f"{len(ratings)} training ratings, {len(user_index)} users, {len(item_index)} items, "
        f"ratings {ratings.min():g}..{ratings.max():g}, mean {global_mean:.4f}",
        flush=True,
    )
    shard = _host_shard(len(ratings), len(env.hosts), env.host_rank, hp["seed"])

    def recommender_of(net) -> Recommender:
        from .networks import arrays

        return Recommender(
            kind=hp["model"],
            users=user_index,
            items=item_index,
            params=arrays(net),
            min_rating=float(ratings.min()),
            max_rating=float(ratings.max()),
            mean_rating=global_mean,
        )

    evaluate = None
    if validation is not None:
        v_users, v_items = user_index.lookup_array(validation.users), item_index.lookup_array(validation.items)
        unknown = int(np.sum((v_users < 0) | (v_items < 0)))
        baseline = _rmse(np.full(len(validation), global_mean), validation.ratings)
        print(f"{len(validation)} validation ratings ({unknown} with an id unseen in training)", flush=True)
        log_metric("validation_baseline_rmse", baseline)

        def evaluate(net) -> dict[str, float]:
            predicted = recommender_of(net).predict(v_users, v_items)
            error = predicted - validation.ratings
            return {"validation_rmse": float(np.sqrt(np.mean(error**2))), "validation_mae": float(np.mean(abs(error)))}

    cpu.apply(cpu.mxnet_environment(env.num_gpus, len(env.hosts)))
    # ps-lite reads its role at `import mxnet`: start the scheduler/servers first (no-op on one host).
    children = distributed.start_mxnet_parameter_servers(env)
    try:
        from . import fitting

        config = fitting.FitConfig(
            model=hp["model"],
            num_factors=hp["num_factors"],
            hidden_units=hp["hidden_units"],
            dropout=hp["dropout"],
            epochs=hp["epochs"],
            batch_size=max(1, hp["mini_batch_size"] // len(env.hosts)),
            learning_rate=hp["learning_rate"],
            wd=hp["wd"],
            optimizer=hp["optimizer"],
            l2=hp["l2"],
            seed=hp["seed"],
            kvstore=distributed.kvstore_type(env, hp["kvstore"]),
            num_gpus=env.num_gpus,
            checkpoint_dir=env.checkpoint_dir,
            write_checkpoints=env.is_master,
        )
        signature = {
            "model": hp["model"],
            "num_factors": hp["num_factors"],
            "hidden_units": hp["hidden_units"] if hp["model"] != "mf" else [],
            "num_users": len(user_index),
            "num_items": len(item_index),
            "num_ratings": len(ratings),
            "hosts": len(env.hosts),
        }
        print(
            f"training {hp['model']} on {config.kvstore} kvstore, {config.batch_size} ratings per host step", flush=True
        )
        result = fitting.fit(
            config,
            users[shard],
            items[shard],
            ratings[shard],
            len(user_index),
            len(item_index),
            global_mean,
            evaluate=evaluate,
            signature=signature,
        )
        if result.interrupted:
            return
        model = recommender_of(result.net)
        _check_export(model, fitting.predict(result.net, users[:2048], items[:2048]), users[:2048], items[:2048])
        metrics = _final_metrics(hp, result, baseline if validation is not None else None)
        write_metrics(metrics, env.paths)
        if env.is_master:
            model.titles = titles_for(item_index, titles) if titles else None
            model.rated_indptr, model.rated_indices = rated_csr(users, items, len(user_index))
            model.settings = {"hyperparameters": hp}
            model.save(env.paths.model_dir)
            fitting.export_symbol(result.net, env.paths.model_dir)
            atomic.write_json(env.paths.model_dir / "metrics.json", metrics, default=float)
            print(f"model written to {env.paths.model_dir}", flush=True)
        del result  # release the kvstore before waiting for the parameter servers to finish
    finally:
        distributed.stop_children(children)


def _host_shard(count: int, hosts: int, rank: int, seed: int) -> np.ndarray:
    """Equal-sized disjoint shards (a dist_sync step needs every worker to run the same number of batches)."""
    if hosts == 1:
        return np.arange(count)
    per_host = count // hosts
    if per_host == 0:
        raise DataError(f"{count} training ratings cannot be split across {hosts} hosts")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[rank * per_host : (rank + 1) * per_host])


def _rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def _check_export(model: Recommender, network_output: np.ndarray, users: np.ndarray, items: np.ndarray) -> None:
    """The served numpy model must compute what the network computes."""
    difference = float(np.max(np.abs(model.score(users, items) - network_output))) if len(users) else 0.0
    if difference > 1e-3:
        raise RuntimeError(f"the exported model differs from the network by {difference:.3g}")


def _final_metrics(hp: dict, result, baseline: float | None) -> dict:
    last = result.history[-1] if result.history else {}
    metrics = {
        "model": hp["model"],
        "epochs": result.epochs_done,
        "train_rmse": last.get("train_rmse"),
        "samples_per_second": result.samples_per_second,
        "history": result.history,
    }
    if baseline is not None:
        metrics.update(
            validation_rmse=last.get("validation_rmse"),
            validation_mae=last.get("validation_mae"),
            validation_baseline_rmse=baseline,
        )
    if result.resumed_from is not None:
        metrics["resumed_from_epoch"] = result.resumed_from
    return metrics
