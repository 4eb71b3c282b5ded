"""The built-in trainer (BYOC_TRAIN=ncf_tf.train:train): data prep, optional GMF/MLP pre-training, NeuMF,
evaluation each epoch (HR@K / NDCG@K against sampled negatives, AUC / accuracy), checkpoints with resume,
multi-worker training (MultiWorkerMirroredStrategy, or parameter servers) and the export (SavedModel + id maps).

Defaults are the NCF paper's (He et al. 2017, and its reference code) but for the model size: 4 negatives per
positive, batch 256, Adam at 0.001, 20 epochs, leave-one-out, 100 evaluation negatives, NeuMF initialised from
pre-trained GMF and MLP and fine-tuned with plain SGD; 32 predictive factors and MLP layers 128-64-32 (the
paper's 8 factors and 64-32-16-8) were chosen on a validation split of ml-latest-small (each user's
second-latest rating): README, "Quality".
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from byoc_runtime import interrupt
from byoc_runtime.errors import DataError, HyperparameterError
from byoc_runtime.hyperparameters import Param, validate
from byoc_runtime.metrics import write_metrics
from byoc_runtime.training_env import TrainingEnv

from . import distribution, prep

log = logging.getLogger(__name__)

SPEC = {
    "epochs": Param(int, 20, min=1, max=1000, help="epochs of NeuMF (and of each pre-trained tower)"),
    "batch_size": Param(int, 256, min=1, max=1 << 20, help="global mini-batch size"),
    "learning_rate": Param(float, 0.001, min=0.0, help="step size of `learner`"),
    "learner": Param(str, "adam", choices=("adam", "sgd", "adagrad", "rmsprop"), help="optimizer"),
    "factors": Param(int, 32, min=1, max=1024, help="GMF embedding size (predictive factors)"),
    "layers": Param(list, [128, 64, 32], min=1, max=8192, help="MLP widths; the first is 2x the embedding"),
    "dropout": Param(float, 0.0, min=0.0, max=0.95, help="dropout after each MLP layer"),
    "num_neg": Param(int, 4, min=1, max=100, help="sampled negatives per positive, resampled every epoch"),
    "pretrain": Param(bool, True, help="pre-train GMF and MLP, then initialise NeuMF from them (paper's best)"),
    "finetune_learner": Param(str, "sgd", choices=("adam", "sgd", "adagrad", "rmsprop"),
                              help="optimizer of NeuMF after pre-training (the paper: plain SGD)"),
    "holdout": Param(int, 1, min=1, max=1000, help="latest interactions held out per user (1 = leave-one-out)"),
    "min_rating": Param(float, 0.0, help="ratings below this are not interactions"),
    "eval_negatives": Param(int, prep.EVAL_NEGATIVES, min=1, max=10000, help="negatives ranked per held-out item"),
    "top_k": Param(int, 10, min=1, max=1000, help="K of HR@K and NDCG@K"),
    "steps_per_execution": Param(int, 32, min=1, max=1000, help="batches per compiled step (speed only)"),
    "seed": Param(int, 0, min=0, help="seed of initialisation, negative sampling and shuffling"),
}
TRAIN_CHANNELS = ("training", "train")  # the course calls it `training`


def train(env: TrainingEnv) -> None:
    hp = validate(env.hyperparameters, SPEC)
    if hp["layers"][0] % 2 or any(not isinstance(w, int) for w in hp["layers"]):
        raise HyperparameterError("layers", f"integer widths with an even first width expected, got {hp['layers']}")
    data, evaluation = _load_data(env, hp)
    parameter_servers = len(env.hosts) > 1 and bool(env.framework_params.get("sagemaker_parameter_server_enabled"))
    # TF_CONFIG must be in place before TensorFlow starts its distributed runtime.
    distribution.export(env, parameter_servers)
    servers = distribution.start_servers(env) if parameter_servers else []
    if servers and not env.is_master:
        distribution.wait(servers)  # this host only serves the chief's training loop
        return
    interrupt.cooperate()
    try:
        _train_and_export(env, hp, data, evaluation, parameter_servers)
    finally:
        distribution.stop(servers)  # the chief's own ps task holds variables until the export is done


def _train_and_export(env: TrainingEnv, hp: dict[str, Any], data: prep.Interactions,
                      evaluation: prep.EvalSet | None, parameter_servers: bool) -> None:
    from .trainer import Trainer  # TensorFlow loads here, after the cheap checks above

    started = time.perf_counter()
    trainer = Trainer(env, hp, data, evaluation, parameter_servers)
    metrics = trainer.run()
    metrics["train_seconds"] = time.perf_counter() - started
    write_metrics(metrics, env.paths)
    if interrupt.requested():
        print("SIGTERM: checkpoint saved; stopping", flush=True)
        return
    trainer.export(env.paths.model_dir, metrics)


def _load_data(env: TrainingEnv, hp: dict[str, Any]) -> tuple[prep.Interactions, prep.EvalSet | None]:
    channel = next((env.channels[n] for n in TRAIN_CHANNELS if n in env.channels), None)
    channel = channel or env.channel("training", required=False) or env.channel("train", required=False)
    if channel is None:
        given = ", ".join(sorted(env.channels)) or "none"
        raise DataError(f"Give the ratings in a channel named 'training' or 'train' (channels given: {given})")
    test = env.channel("test", required=False)
    data = prep.load_channel(channel.path, hp["holdout"], hp["min_rating"], test.path if test else None,
                             channel=channel.name, content_type=channel.content_type)
    print(f"data: {data.n_users} users, {data.n_items} items, {len(data.train_users)} training interactions, "
          f"{len(data.test_users)} held out", flush=True)
    evaluation = prep.eval_set(data, hp["seed"], min(hp["eval_negatives"], max(1, data.n_items - 1)))
    return data, evaluation


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter buries the job's own log
