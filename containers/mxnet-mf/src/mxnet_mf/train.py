"""Training entry (BYOC_TRAIN=mxnet_mf.train:train): MovieLens ratings in, a recommender model out.

Channels: train (required), test or validation (optional: per-epoch validation RMSE; early stopping),
items (optional: titles). Object2Vec's hyperparameters select Object2Vec mode (object2vec.py): its JSON
Lines, its network shape, its regression or softmax output. On several hosts every host trains on its
shard of the ratings through a dist_sync kvstore and only the master (hosts[0]) writes the model and the
checkpoints.
"""

from __future__ import annotations

import logging

import numpy as np

from byoc_runtime import atomic, cpu, distributed, interrupt
from byoc_runtime.errors import DataError, HyperparameterError
from byoc_runtime.hyperparameters import Param, validate
from byoc_runtime.metrics import log_metric, write_metrics
from byoc_runtime.training_env import TrainingEnv

from . import object2vec
from .data import Expect, IdIndex, read_ratings, read_titles, titles_for
from .recommender import Recommender, rated_csr

log = logging.getLogger(__name__)

# Defaults chosen for MovieLens-100K-sized data (943 users x 1682 items, 100k ratings); see the README.
SPEC = {
    "model": Param(
        str,
        "mf",
        choices=("mf", "deep", "mlp", "object2vec"),
        help="mf: dot product + biases; deep: MLP; mlp: Lab 3; object2vec: set by Object2Vec's hyperparameters",
    ),
    "num_factors": Param(int, 64, min=1, max=4096, help="embedding size of users and items"),
    "epochs": Param(int, 20, min=1, max=10000, help="passes over the training ratings"),
    "mini_batch_size": Param(int, 256, min=1, max=1_000_000, help="ratings per step, summed over all hosts"),
    "learning_rate": Param(float, 0.002, min=1e-8, max=10.0, help="optimizer step size"),
    "wd": Param(float, 0.0, min=0.0, max=1.0, help="L2 weight decay on every parameter, every step"),
    "l2": Param(
        float,
        0.1,
        min=0.0,
        max=100.0,
        help="L2 on each rating's user and item rows (Funk SVD); object2vec softmax: 0.03 when unset",
    ),
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
    **object2vec.SPEC,
}


def train(env: TrainingEnv) -> None:
    hp = validate(env.hyperparameters, SPEC)
    given = {name: value for name, value in env.hyperparameters.items() if name in SPEC}
    hp["model"] = object2vec.mode(given, hp["model"])
    o2v = hp["model"] == "object2vec"
    expect = None
    if o2v:
        object2vec.check(given, hp)
        if hp["weight_decay"] is not None:
            hp["wd"] = hp["weight_decay"]
        if hp["early_stopping_patience"] is None:
            hp["early_stopping_patience"] = object2vec.DEFAULT_PATIENCE
        if "l2" not in given and hp["output_layer"] == "softmax":
            hp["l2"] = object2vec.SOFTMAX_L2
        line = object2vec.no_effect_line(given, core=object2vec.uses_core(hp))
        if line:
            log.warning(line)
        classes = hp["num_classes"] if hp["output_layer"] == "softmax" else None
        expect = Expect(hp["enc0_vocab_size"], hp["enc1_vocab_size"], classes)
    for units in hp["hidden_units"]:
        if not isinstance(units, int):
            raise HyperparameterError("hidden_units", f"expected whole numbers of units, got {units!r}")
    if hp["mini_batch_size"] < len(env.hosts):
        raise HyperparameterError("mini_batch_size", f"must be at least the number of hosts ({len(env.hosts)})")
    interrupt.cooperate()

    train_table = read_ratings(env.channel("train"), expect)
    validation_channel = env.channel("test", required=False) or env.channel("validation", required=False)
    validation = read_ratings(validation_channel, expect) if validation_channel is not None else None
    classifier = o2v and hp["output_layer"] == "softmax"
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
            settings={"object2vec": object2vec.network_settings(hp)} if o2v else {},
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
        print(f"{len(validation)} validation ratings ({unknown} with an id unseen in training)", flush=True)
        if classifier:
            majority = np.bincount(ratings.astype(np.int64), minlength=hp["num_classes"]).argmax()
            baseline = float(np.mean(validation.ratings == majority))
            log_metric("validation_baseline_accuracy", baseline)
        else:
            baseline = _rmse(np.full(len(validation), global_mean), validation.ratings)
            log_metric("validation_baseline_rmse", baseline)

        def evaluate(net) -> dict[str, float]:
            model = recommender_of(net)
            if classifier:
                return _classification_metrics(model.probabilities(v_users, v_items), validation.ratings)
            error = model.predict(v_users, v_items) - validation.ratings
            mse = float(np.mean(error**2))
            return {
                "validation_rmse": float(np.sqrt(mse)),
                "validation_mae": float(np.mean(abs(error))),
                "validation_mse": mse,
            }

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
            object2vec=object2vec.network_settings(hp) if o2v else None,
            early_stopping=(hp["early_stopping_patience"], hp["early_stopping_tolerance"])
            if hp["early_stopping_patience"] and validation is not None
            else None,
        )
        signature = {
            "model": hp["model"],
            "num_factors": hp["num_factors"],
            "hidden_units": hp["hidden_units"] if hp["model"] != "mf" else [],
            "num_users": len(user_index),
            "num_items": len(item_index),
            "num_ratings": len(ratings),
            "hosts": len(env.hosts),
            **({"object2vec": object2vec.network_settings(hp)} if o2v else {}),
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
            model.settings = {**model.settings, "hyperparameters": hp}
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


def _classification_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    picked = probabilities[np.arange(len(labels)), labels.astype(np.int64)]
    return {
        "validation_accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "validation_cross_entropy": float(-np.mean(np.log(np.maximum(picked, 1e-12)))),
    }


def _final_metrics(hp: dict, result, baseline: float | None) -> dict:
    # The model kept is the best epoch's when early stopping chose one, else the last epoch's.
    last = result.history[result.best_epoch - 1] if result.best_epoch else result.history[-1] if result.history else {}
    metrics = {
        "model": hp["model"],
        "epochs": result.epochs_done,
        **{name: value for name, value in last.items() if name.startswith("train_")},
        "samples_per_second": result.samples_per_second,
        "history": result.history,
    }
    if result.best_epoch:
        metrics.update(best_epoch=result.best_epoch, stopped_early=result.stopped_early)
    if baseline is not None:
        metrics.update({name: value for name, value in last.items() if name.startswith("validation_")})
        is_classifier = hp["model"] == "object2vec" and hp["output_layer"] == "softmax"
        metrics["validation_baseline_accuracy" if is_classifier else "validation_baseline_rmse"] = baseline
    if result.resumed_from is not None:
        metrics["resumed_from_epoch"] = result.resumed_from
    return metrics
