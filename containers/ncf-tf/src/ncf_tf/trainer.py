"""The TensorFlow side of training: phases (GMF, MLP, then NeuMF; or NeuMF alone), one Keras fit per epoch
over freshly sampled negatives, evaluation, checkpoints (per host, resumable) and export."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from byoc_runtime import atomic, interrupt
from byoc_runtime.checkpoints import CheckpointStore
from byoc_runtime.metrics import log_metric
from byoc_runtime.training_env import TrainingEnv

from . import artifacts, distribution, evaluation, numpy_model, prep
from . import model as ncf_model
from .pipeline import EpochSampler, dataset

CHECKPOINT_PREFIX = "ckpt"  # tf.train.Checkpoint files: ckpt.index, ckpt.data-00000-of-00001


class StopOnSigterm(keras.callbacks.Callback):
    """Ends the epoch early on SIGTERM; the trainer then checkpoints and returns."""

    def on_train_batch_end(self, batch, logs=None):
        if interrupt.requested():
            self.model.stop_training = True


class Trainer:
    def __init__(self, env: TrainingEnv, hp: dict[str, Any], data: prep.Interactions, evalset: prep.EvalSet | None,
                 parameter_servers: bool = False):
        self.env, self.hp, self.data, self.evalset = env, hp, data, evalset
        for name in ("tensorflow", "absl"):  # an INFO line per collective op, and session configs, otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        self.parameter_servers = parameter_servers
        # Under parameter servers the variables live on the ps hosts, which would each write their shard to
        # their own disk: do the file I/O on the chief instead.
        self.io_device = "/job:chief/replica:0/task:0/device:CPU:0" if parameter_servers else None
        self.strategy = distribution.strategy(env, parameter_servers)
        if len(env.hosts) > 1:
            print(f"{type(self.strategy).__name__}: {self.strategy.num_replicas_in_sync} replicas in sync",
                  flush=True)
        keras.utils.set_random_seed(hp["seed"])
        self.sampler = EpochSampler(data, hp["num_neg"], hp["seed"])
        # Each host checkpoints into its own folder: hosts share one S3 checkpoint prefix on SageMaker. In it,
        # one CheckpointStore per phase: <phase>-<epoch>/ckpt.* + MANIFEST.json, the newest three kept.
        self.checkpoint_dir = env.checkpoint_dir / env.current_host
        self.models: dict[str, keras.Model] = {}
        self.metrics: dict[str, Any] = {}
        if evalset is not None:
            k = hp["top_k"]
            baseline = evaluation.popularity_scores(data.train_items, data.n_items, evalset.candidates)
            self.metrics[f"popularity_hr_at_{k}"] = evaluation.hit_ratio(baseline, k)
            self.metrics[f"popularity_ndcg_at_{k}"] = evaluation.ndcg(baseline, k)
            for name in (f"popularity_hr_at_{k}", f"popularity_ndcg_at_{k}"):
                log_metric(name, self.metrics[name])

    def phases(self) -> list[str]:
        return ["gmf", "mlp", "neumf"] if self.hp["pretrain"] else ["neumf"]

    def run(self) -> dict[str, Any]:
        for offset, phase in enumerate(self.phases()):
            if not self._run_phase(phase, offset):
                break
        return self.metrics

    def _build(self, phase: str) -> keras.Model:
        hp = self.hp
        with self.strategy.scope():
            model = ncf_model.build(phase, self.data.n_users, self.data.n_items, hp["factors"], hp["layers"],
                                    hp["dropout"])
            finetune = phase == "neumf" and hp["pretrain"]
            if finetune:
                ncf_model.load_pretrained(model, self.models["gmf"], self.models["mlp"])
            learner = hp["finetune_learner"] if finetune else hp["learner"]
            model.compile(ncf_model.optimizer(learner, hp["learning_rate"]), loss="binary_crossentropy",
                          steps_per_execution=hp["steps_per_execution"])
        return model

    def _run_phase(self, phase: str, offset: int) -> bool:
        """Train one phase to its last epoch; False when stopped by SIGTERM."""
        hp = self.hp
        model = self._build(phase)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
        store = CheckpointStore(self.checkpoint_dir, phase)

        def restore(found) -> int:  # only called on a checkpoint whose files match its manifest
            checkpoint.read(str(found.file(CHECKPOINT_PREFIX)), options=self._checkpoint_options()).expect_partial()
            return int(found.meta["epoch"])

        restored = store.restore(restore)
        done = restored[1] if restored else 0
        if done:
            print(f"resuming {phase} from the checkpoint after epoch {done}", flush=True)
        score = ncf_model.scorer(model)
        for epoch in range(done, hp["epochs"]):
            users, items, labels = self.sampler.epoch(epoch + offset * hp["epochs"])
            started = time.perf_counter()
            # Keras refuses batch-level callbacks under parameter servers: SIGTERM waits for the epoch's end.
            callbacks = [] if self.parameter_servers else [StopOnSigterm()]
            history = model.fit(**self._fit_inputs(users, items, labels), epochs=1, verbose=0, callbacks=callbacks)
            seconds = time.perf_counter() - started
            context = {"phase": phase, "epoch": epoch + 1}
            self.metrics["train_loss"] = float(history.history["loss"][-1])
            self.metrics["train_examples_per_second"] = len(users) / seconds
            log_metric("train_loss", self.metrics["train_loss"], **context)
            log_metric("train_examples_per_second", self.metrics["train_examples_per_second"], **context)
            self._evaluate(score, context)
            with store.save(epoch + 1, {"phase": phase, "epoch": epoch + 1}) as scratch:
                checkpoint.write(str(scratch / CHECKPOINT_PREFIX), options=self._checkpoint_options())
            self.metrics["epochs"] = {**self.metrics.get("epochs", {}), phase: epoch + 1}
            if interrupt.requested():
                return False
        self.models[phase] = model
        return True

    def _checkpoint_options(self) -> tf.train.CheckpointOptions:
        return tf.train.CheckpointOptions(experimental_io_device=self.io_device)

    def _fit_inputs(self, users, items, labels) -> dict[str, Any]:
        batch = self.hp["batch_size"]
        if not self.parameter_servers:
            return {"x": dataset(users, items, labels, batch, drop_remainder=len(self.env.hosts) > 1)}
        # Parameter servers: each worker reads its own shard, for as many steps as one pass over the data takes.
        workers = len(self.env.hosts) - 1

        def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
            shard = (context.num_input_pipelines, context.input_pipeline_id)
            return dataset(users, items, labels, batch, drop_remainder=True, shard=shard).repeat()

        steps = max(1, len(users) // (batch * workers))
        return {"x": keras.utils.experimental.DatasetCreator(per_worker), "steps_per_epoch": steps}

    def _evaluate(self, score, context: dict[str, Any]) -> None:
        if self.evalset is None:
            return
        k, ev = self.hp["top_k"], self.evalset
        users = np.repeat(ev.users, ev.candidates.shape[1])
        scores = ncf_model.score_pairs(score, users, ev.candidates.ravel()).reshape(ev.candidates.shape)
        labelled = ncf_model.score_pairs(score, ev.labelled[:, 0], ev.labelled[:, 1])
        results = {
            f"hr_at_{k}": evaluation.hit_ratio(scores, k),
            f"ndcg_at_{k}": evaluation.ndcg(scores, k),
            "test_auc": evaluation.auc(ev.labelled[:, 2], labelled),
            "test_accuracy": evaluation.accuracy(ev.labelled[:, 2], labelled),
        }
        for name, value in results.items():
            log_metric(name, value, **context)
        self.metrics.update(results)

    def export(self, model_dir: Path, metrics: dict[str, Any]) -> None:
        final = self.models.get("neumf")
        if final is None:
            return
        target, keep = artifacts.export_dir(self.env.is_master, model_dir)
        options = tf.saved_model.SaveOptions(experimental_io_device=self.io_device)
        if not keep:  # a worker takes part in the collective save, into a folder it then throws away
            final.save(str(target / artifacts.MODEL_VERSION), save_format="tf", include_optimizer=False,
                       options=options)
            artifacts.discard(target)
            return
        # TensorFlow writes the SavedModel into a scratch directory; each file is then copied into place
        # atomically, so a full disk is an OSError naming the file, never half a variables.data file.
        with atomic.staged(target / artifacts.MODEL_VERSION) as scratch:
            final.save(str(scratch), save_format="tf", include_optimizer=False, options=options)
        hp = self.hp
        meta = {"hyperparameters": hp, "n_users": self.data.n_users, "n_items": self.data.n_items,
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, float)}}
        artifacts.write_extras(model_dir, self.data.user_ids, self.data.item_ids, self.data.train_users,
                               self.data.train_items, meta)
        # The same weights for the serve-only image, which scores in numpy (no TensorFlow there).
        numpy_model.export(final, model_dir / artifacts.EXTRAS / numpy_model.WEIGHTS, artifacts.MODEL_VERSION)
        print(f"model saved to {target / artifacts.MODEL_VERSION}", flush=True)
