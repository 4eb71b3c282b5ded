"""Training entry (BYOC_TRAIN=mxnet_mf.train:train): MovieLens ratings in, a recommender model out.

Channels: train (required), test or validation (optional: per-epoch validation RMSE; early stopping),
items (optional: titles). Object2Vec's hyperparameters select Object2Vec mode (object2vec.py): its JSON
Lines, its network shape, its regression or softmax output. On several hosts every host trains on its
shard of the ratings through a dist_sync kvstore and only the master (hosts[0]) writes the model and the
checkpoints.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

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
        choices=("mf", "deep", "mlp", "object2vec", "dssm"),
        help="mf: dot product + biases; deep: MLP; mlp: Lab 3; object2vec: set by Object2Vec's hyperparameters; "
        "dssm: content towers over the items channel's features (Lab 3-2)",
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
    "autorec_units": Param(
        int, 500, min=0, max=4096, help="mf: code size of the I-AutoRec averaged with the MF (0: the MF alone)"
    ),
    "autorec_epochs": Param(int, 60, min=1, max=10000, help="mf: passes of the I-AutoRec over the items"),
    "autorec_learning_rate": Param(float, 0.001, min=1e-8, max=10.0, help="mf: the I-AutoRec's Adam step size"),
    "autorec_l2": Param(float, 200.0, min=0.0, max=1e6, help="mf: L2 on the I-AutoRec's weights, per epoch"),
    "blend_holdout": Param(
        float,
        0.05,
        min=0.0,
        max=0.5,
        help="mf: share of the training ratings held out to fit the blend weight and the I-AutoRec's epochs (0: none)",
    ),
    "blend_weight": Param(float, 0.5, min=0.0, max=1.0, help="mf, blend_holdout=0: the MF's share of the average"),
    "dssm_layers": Param(
        list, [128, 64], min=1, max=65536, help="dssm: each tower's MLP widths, the last the vector size"
    ),
    "negatives": Param(int, 10, min=1, max=1000, help="dssm: random catalogue items per liked rating"),
    "gamma": Param(
        float, 10.0, min=0.01, max=1000.0, help="dssm: softmax smoothing of the cosines (the paper's gamma)"
    ),
    "positive_rating": Param(float, 4.0, help="dssm: ratings at or above this are liked (positives and queries)"),
    "min_word_count": Param(int, 2, min=1, help="dssm: words in fewer rated items than this are dropped"),
    "profile_words": Param(
        int, 64, min=1, max=4096, help="dssm: a user's query: the most frequent words of liked items"
    ),
    "user_id_dropout": Param(float, 0.1, min=0.0, max=1.0, help="dssm: share of pairs trained without the user's id"),
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
    if hp["model"] == "dssm":
        from . import dssm_job

        # No cpu.mxnet_environment here: under the naive engine with 2 OpenMP threads a DSSM step (sparse
        # products) took 330 ms against 19 ms with MXNet's own threaded engine.
        dssm_job.run(env, hp, train_table, validation)
        return
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
    ensemble = hp["model"] == "mf" and hp["autorec_units"] > 0
    # The ensemble's members train without the held-out ratings, which then fit the blend weight.
    fitted, held_out = _holdout(len(ratings), hp["blend_holdout"] if ensemble else 0.0, hp["seed"])
    shard = fitted[_host_shard(len(fitted), len(env.hosts), env.host_rank, hp["seed"])]

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

    evaluate = measure = None
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

        def measure(model: Recommender) -> dict[str, float]:
            if classifier:
                return _classification_metrics(model.probabilities(v_users, v_items), validation.ratings)
            error = model.predict(v_users, v_items) - validation.ratings
            mse = float(np.mean(error**2))
            return {
                "validation_rmse": float(np.sqrt(mse)),
                "validation_mae": float(np.mean(abs(error))),
                "validation_mse": mse,
            }

        def evaluate(net) -> dict[str, float]:
            return measure(recommender_of(net))

    cpu.apply(cpu_environment(hp, len(shard), len(env.hosts), env.num_gpus))
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
        config = replace(config, **large_data_settings(hp, given, len(shard), len(env.hosts), env.num_gpus))
        signature = {
            "model": hp["model"],
            "num_factors": hp["num_factors"],
            "hidden_units": hp["hidden_units"] if hp["model"] != "mf" else [],
            "num_users": len(user_index),
            "num_items": len(item_index),
            "num_ratings": len(fitted),
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
        if ensemble:
            ctx = fitting.contexts(env.num_gpus)[0]
            blended = _with_autorec(hp, model, (users, items, ratings), fitted, held_out, ctx, measure)
            if blended is None:
                return
            model, ensemble_metrics = blended
            metrics.update(ensemble_metrics)
            if measure is not None:
                metrics.update(measure(model))
                log_metric("validation_rmse", metrics["validation_rmse"])
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


def _with_autorec(hp, mf: Recommender, table, fitted, held_out, ctx, measure) -> tuple[Recommender, dict] | None:
    """Train the I-AutoRec on the fitted ratings and fold it into the MF as extra factors (ensemble.blend),
    weighted by least squares on the held-out ratings (or `blend_weight` without any), keeping the I-AutoRec
    epoch whose blend does best on them. Returns the model and its metrics; None when a SIGTERM stopped it (the
    MF's checkpoints are kept)."""
    from . import autorec, ensemble

    users, items, ratings = table
    held = (users[held_out], items[held_out], ratings[held_out])
    mf_held = mf.score(held[0], held[1])
    fits: dict[int, tuple[float, float]] = {}  # epoch -> (blend weight, held-out RMSE), from fit_weight

    def weight_of(trained: ensemble.AutoRecModel) -> float:
        return fits[trained.epochs_done][0] if trained.epochs_done in fits else hp["blend_weight"]

    def blended(trained: ensemble.AutoRecModel) -> Recommender:
        return replace(mf, params=ensemble.blend(mf.params, trained, weight_of(trained)))

    def evaluate(trained: ensemble.AutoRecModel) -> dict[str, float]:
        record = {}
        if len(held_out):
            weight, rmse = ensemble.fit_weight(
                mf_held, trained.predict(held[0], held[1]), held[2], mf.min_rating, mf.max_rating
            )
            fits[trained.epochs_done] = weight, rmse
            record.update(blend_weight=weight, held_out_blend_rmse=rmse)
        if measure is not None:
            # validation_blend_rmse, not blend_validation_rmse: SageMaker's `validation_rmse=` regex would match it
            measured = measure(blended(trained))
            record.update({name.replace("_rmse", "_blend_rmse"): measured[name] for name in measured if "rmse" in name})
        return record

    config = autorec.AutoRecConfig(
        hp["autorec_units"], hp["autorec_epochs"], hp["autorec_learning_rate"], hp["autorec_l2"], seed=hp["seed"]
    )
    print(
        f"training the I-AutoRec ({config.units} units, at most {config.epochs} epochs) to average with the MF; "
        f"{len(held_out)} held-out ratings fit the blend",
        flush=True,
    )
    trained = autorec.fit(
        config,
        users[fitted],
        items[fitted],
        ratings[fitted],
        len(mf.users),
        len(mf.items),
        ctx,
        evaluate if len(held_out) or measure else None,
        best_by="held_out_blend_rmse" if len(held_out) else None,
    )
    if trained.interrupted:
        print("SIGTERM during the I-AutoRec: no model written; the MF's checkpoints are kept", flush=True)
        return None
    weight = weight_of(trained)
    print(f"the served model: {weight:.2f} x MF + {1 - weight:.2f} x I-AutoRec", flush=True)
    model = blended(trained)
    sample_users, sample_items = users[:2048], items[:2048]
    expected = weight * mf.score(sample_users, sample_items) + (1 - weight) * trained.predict(
        sample_users, sample_items
    )
    _check_export(model, expected, sample_users, sample_items)
    ensemble_metrics = {"blend_weight": weight, "autorec_epoch": trained.epochs_done, "held_out_ratings": len(held_out)}
    if trained.epochs_done in fits:
        ensemble_metrics["held_out_blend_rmse"] = fits[trained.epochs_done][1]
    return model, ensemble_metrics


# Large data (model mf, one CPU host): fitting._FastMF's loop, and when the job leaves them unset, a batch and
# step size for it. At ML-100K's size the autograd loop and its defaults stay (the issue-15 quality figures).
LARGE_DATA = 500_000
LARGE_BATCH, LARGE_LEARNING_RATE = 65536, 0.05


def large_data_settings(hp: dict, given: dict, count: int, hosts: int, num_gpus: int) -> dict:
    """FitConfig fields for `count` training ratings: {} below LARGE_DATA or off the fast loop's ground; else
    fast_mf and, unless the job set them, mini-batch LARGE_BATCH at LARGE_LEARNING_RATE (on 1M generated
    ratings, 5 epochs: held-out RMSE 0.867 at 65,536 and 0.05, against 0.875 at 8,192 and 0.01, at 2-3x the
    ratings/s: fewer steps, each touching each row once; bench/mxnet_mf_vs_surprise.py)."""
    if count < LARGE_DATA or hp["model"] != "mf" or hp["optimizer"] != "adam" or hosts > 1 or num_gpus:
        return {}
    settings: dict = {"fast_mf": True}
    if "mini_batch_size" not in given:
        settings["batch_size"] = LARGE_BATCH
    if "learning_rate" not in given:
        settings["learning_rate"] = LARGE_LEARNING_RATE
    return settings


def cpu_environment(hp: dict, count: int, hosts: int, num_gpus: int) -> dict[str, str]:
    """MXNet's CPU settings for this job, applied before MXNet is imported: the runtime's, and for the large-data
    loop OMP_WAIT_POLICY=PASSIVE (unless set): OpenMP threads sleep when idle instead of spinning. That loop's
    compiled kernel (mf_kernel) runs on numba's own threads while MXNet's OpenMP threads idle; spinning
    threads on a busy host stalled at their barriers (the MXNet loop it replaced: 0.68M ratings/s against 1.25M
    passive, on 1M ratings with two cores half taken by other work; numba's OpenMP layer: 1.8M against 16M)."""
    settings = cpu.mxnet_environment(num_gpus, hosts)
    if large_data_settings(hp, {}, count, hosts, num_gpus) and not os.environ.get("OMP_WAIT_POLICY"):
        settings["OMP_WAIT_POLICY"] = "PASSIVE"
    return settings


def _holdout(count: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices to train on, indices held out): a random `share` of the ratings, at least one kept."""
    held = min(int(round(count * share)), count - 1)
    if held <= 0:
        return np.arange(count), np.arange(0)
    order = np.random.default_rng(seed + 1).permutation(count)
    return np.sort(order[held:]), np.sort(order[:held])


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
