"""The SageMaker training job: `network` (mlp | cnn) on MNIST-style data, one or more hosts, CPU or GPUs.

Channels: `train` (required) and `test` or `validation` (optional), in any format of data.py.
Multi-host: the ps-lite scheduler and servers start before mxnet is imported (byoc_runtime.distributed),
each worker trains on its shard with `batch_size / workers` images per step, kvstore dist_sync; the master
(hosts[0]) alone writes the model and the checkpoints.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from byoc_runtime import atomic, cpu, distributed, interrupt
from byoc_runtime.errors import DataError, HyperparameterError
from byoc_runtime.hyperparameters import Param, validate
from byoc_runtime.metrics import log_metric, write_metrics
from byoc_runtime.training_env import TrainingEnv

from . import augment, data

KVSTORES = ("auto", "local", "device", "dist_sync", "dist_device_sync")
FASHION_MNIST = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot")  # fmt: skip
CLASS_PRESETS = {"mnist": tuple(str(d) for d in range(10)), "fashion-mnist": FASHION_MNIST}
SPEC = {
    "network": Param(str, "cnn", choices=("mlp", "cnn"), help="mlp (128-64-10) or cnn (LeNet-style)"),
    "conv_channels": Param(
        list, [32, 64], min=1, max=1024, help="cnn: output channels of its convolutions (the course's: 20,50)"
    ),  # fmt: skip
    "conv_kernels": Param(
        list, [5, 3], min=1, max=28, help="cnn: kernel size of each convolution, or one for all (the course's: 5)"
    ),  # fmt: skip
    "conv_padding": Param(
        str,
        "valid",
        choices=("valid", "same"),
        help="cnn: valid (none, the course's) or same (odd kernels keep height, width)",
    ),  # fmt: skip
    "batch_size": Param(int, 100, min=1, max=65536, help="images per step, over all hosts and GPUs"),
    "epochs": Param(int, 10, min=1, max=1000, help="passes over the training data"),
    "learning_rate": Param(float, 0.2, min=0.0, max=10.0, help="SGD learning rate (the peak, with cosine)"),
    "momentum": Param(float, 0.9, min=0.0, max=0.999, help="SGD momentum"),
    "wd": Param(float, 0.0005, min=0.0, max=0.1, help="weight decay"),
    "lr_schedule": Param(str, "cosine", choices=("cosine", "constant"), help="per-step cosine decay to 0, or none"),
    "warmup_epochs": Param(
        float,
        1.0,
        min=0.0,
        max=1000.0,
        help="cosine: the learning rate rises linearly from 0 over these first epochs (at most half the steps)",
    ),  # fmt: skip
    "dropout": Param(float, 0.2, min=0.0, max=0.9, help="dropout before the classifier layer"),
    "batch_norm": Param(bool, True, help="batch normalisation before each hidden ReLU"),
    "label_smoothing": Param(
        float, 0.1, min=0.0, max=0.5, help="training targets: 1 - s on the label, s spread over all classes"
    ),  # fmt: skip
    "augment": Param(
        str,
        "auto",
        choices=("auto", "none", "shift", "flip", "shift-flip"),
        help="per-epoch random shifts of up to 2 pixels and/or horizontal flips (clothes, not digits; a model "
        "trained on flips answers the mean of each image and its mirror); auto: shift for the digits 0-9, else none",
    ),  # fmt: skip
    "log_interval": Param(int, 100, min=0, help="log training loss/accuracy every N batches (0: per epoch only)"),
    "kvstore": Param(str, "auto", choices=KVSTORES, help="auto: local, device (GPUs), dist_sync (hosts)"),
    "class_names": Param(
        str, "", help="'mnist', 'fashion-mnist' or comma-separated names (default: digits or the image folder names)"
    ),  # fmt: skip
    "seed": Param(int, 1, min=0, help="initialisation and shuffling seed (the same on every host)"),
}
MODEL_PREFIX = "model"  # model-symbol.json + model-0000.params (HybridBlock.export)
META_FILE = "gluon-cnn.json"


def train(env: TrainingEnv) -> None:
    hp = validate(env.hyperparameters, SPEC)
    # Before anything imports mxnet: the engine and OpenMP settings are read then.
    cpu.apply(cpu.mxnet_environment(env.num_gpus, len(env.hosts)))
    train_channel = env.channel("train")
    test_channel = env.channel("test", required=False) or env.channel("validation", required=False)
    for channel in filter(None, (train_channel, test_channel)):
        if channel.is_pipe:
            raise DataError(f"Channel '{channel.name}' uses Pipe mode; this image reads File or FastFile channels")
    train_set = data.load_channel(train_channel.path, "train", train_channel.content_type)
    test_set = (
        data.load_channel(test_channel.path, test_channel.name, test_channel.content_type) if test_channel else None
    )
    _check_convolutions(hp)
    class_names = _class_names(hp["class_names"], train_set, int(train_set.labels.max()) + 1)
    if hp["augment"] == "auto":
        hp["augment"] = auto_augment(class_names)
    # Parameter servers read DMLC_* when mxnet is imported: start them before the first `import mxnet`.
    distributed.start_mxnet_parameter_servers(env)
    interrupt.cooperate()
    _fit(env, hp, train_set, test_set, class_names)


def auto_augment(class_names: tuple[str, ...]) -> str:
    """augment=auto. Measured on validation splits (the last 10,000 training images), 10 epochs: shifts help
    digits and cost clothes accuracy (the network underfits Fashion-MNIST in 10 epochs; more variety makes it
    worse); flips (with test-time flip averaging) were no better than nothing for clothes (0.9287 vs 0.9284)."""
    return "shift" if tuple(class_names) == CLASS_PRESETS["mnist"] else "none"


def _check_convolutions(hp: dict) -> None:
    """conv_kernels: one size for every convolution or one each; every convolution (each followed by a 2x2
    max-pool) must leave at least one pixel of the 28x28 input."""
    if hp["network"] != "cnn":
        return
    channels, kernels = hp["conv_channels"], hp["conv_kernels"]
    if len(kernels) not in (1, len(channels)):
        raise HyperparameterError(
            "conv_kernels", f"{len(kernels)} sizes for {len(channels)} convolutions (give 1 or {len(channels)})"
        )
    side = 28
    for kernel in kernels * len(channels) if len(kernels) == 1 else kernels:
        pad = (int(kernel) - 1) // 2 if hp["conv_padding"] == "same" else 0
        side = (side + 2 * pad - int(kernel) + 1) // 2
        if side < 1:
            raise HyperparameterError(
                "conv_kernels", f"kernels {kernels} ({hp['conv_padding']} padding) leave no pixels of a 28x28 image"
            )


def _class_names(option: str, train_set: data.Dataset, num_labels: int) -> tuple[str, ...]:
    if option in CLASS_PRESETS:
        names = CLASS_PRESETS[option]
    elif option:
        names = tuple(name.strip() for name in option.split(","))
    else:
        names = train_set.class_names or tuple(str(i) for i in range(max(num_labels, 10)))
    if len(names) < num_labels:
        raise HyperparameterError("class_names", f"{len(names)} names for labels up to {num_labels - 1}")
    return names


def _fit(env: TrainingEnv, hp: dict, train_set: data.Dataset, test_set: data.Dataset | None, class_names) -> None:
    import mxnet as mx

    from . import checkpoint, loop, networks

    contexts = [mx.gpu(i) for i in range(env.num_gpus)] or [mx.cpu()]
    kv_type = distributed.kvstore_type(env, hp["kvstore"])
    kv = mx.kv.create(kv_type)
    workers, rank = kv.num_workers, kv.rank
    if hp["batch_size"] % workers:
        raise HyperparameterError("batch_size", f"{hp['batch_size']} does not split evenly over {workers} workers")
    per_worker = hp["batch_size"] // workers
    shard_size = len(train_set) // workers
    if shard_size < per_worker:
        raise HyperparameterError("batch_size", f"{hp['batch_size']} is larger than the training set")
    batches = shard_size // per_worker
    print(
        f"training {hp['network']} on {len(train_set)} images ({train_set.source}), kvstore {kv_type}, "
        f"worker {rank + 1} of {workers}, {len(contexts)} device(s) {contexts}, {batches} batches of {per_worker}",
        flush=True,
    )

    mx.random.seed(hp["seed"])  # same initial weights on every host
    net = networks.NETWORKS[hp["network"]](
        len(class_names),
        hp["dropout"],
        hp["batch_norm"],
        channels=[int(c) for c in hp["conv_channels"]],
        kernels=[int(k) for k in hp["conv_kernels"]],
        padding=hp["conv_padding"],
    )
    net.initialize(mx.init.Xavier(), ctx=contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    on_servers = kv_type.startswith("dist")
    schedule = learning_rate_schedule(hp, batches)
    optimizer = mx.optimizer.SGD(
        learning_rate=hp["learning_rate"], momentum=hp["momentum"], wd=hp["wd"], lr_scheduler=schedule
    )
    # The schedule lives in the optimizer, so it follows the updates wherever they run. On several hosts
    # they run on the parameter servers (MXNet's default for dist_sync): with update_on_kvstore=False,
    # MXNet 1.9.1 let the workers' weights drift apart in about half of identical 2-host runs.
    trainer = mx.gluon.Trainer(net.collect_params(), optimizer, kvstore=kv)
    progress = checkpoint.load(env.checkpoint_dir, net, trainer, hp["network"], contexts, with_states=not on_servers)
    if progress is not None:
        print(f"resuming from checkpoint at epoch {progress.epoch}", flush=True)
    progress = progress or checkpoint.Progress(network=hp["network"])
    # Restored trainer states carry the update count; otherwise (a fresh job, or dist: states on the servers
    # are not saved) the schedule resumes at the checkpoint's step. Set before the first step, which is when
    # a dist trainer ships its optimizer to the servers.
    if trainer.optimizer.num_update < progress.epoch * batches:
        trainer.optimizer.begin_num_update = trainer.optimizer.num_update = progress.epoch * batches

    x, y = loop.to_device(train_set.images, train_set.labels, contexts[0])
    test = loop.to_device(test_set.images, test_set.labels, contexts[0]) if test_set else None
    runner = loop.Loop(net, trainer, contexts, hp["label_smoothing"])
    flips = hp["augment"].endswith("flip")  # then validated and served on each image and its mirror, averaged
    started = time.perf_counter()
    for epoch in range(progress.epoch, hp["epochs"]):
        rng = np.random.default_rng([hp["seed"], epoch])
        order = rng.permutation(len(train_set))
        if hp["augment"] != "none":
            shift = 2 if hp["augment"].startswith("shift") else 0
            shifted = augment.augment(train_set.images, rng, shift=shift, flip=hp["augment"].endswith("flip"))
            x = loop.to_device(shifted, train_set.labels, contexts[0])[0]
        shard = order[rank::workers][:shard_size]

        def log_batch(batch: int, loss: float, accuracy: float, epoch: int = epoch) -> None:
            print(f"epoch {epoch + 1} batch {batch}/{batches}: loss={loss:.4f} accuracy={accuracy:.4f}", flush=True)

        result = runner.train_epoch(
            x,
            y,
            shard,
            per_worker,
            hp["batch_size"],
            log_interval=hp["log_interval"],
            log=log_batch,
            stop=interrupt.requested,
        )
        if result.interrupted:
            if env.is_master:
                checkpoint.save(env.checkpoint_dir, net, trainer, progress, with_states=not on_servers)
            print(f"SIGTERM: checkpoint saved at epoch {progress.epoch}", flush=True)
            return
        record = {
            "epoch": epoch + 1,
            "train_loss": result.loss,
            "train_accuracy": result.accuracy,
            "images_per_second": result.images_per_second * workers,
        }
        if test is not None:
            record["validation_accuracy"] = runner.evaluate(*test, flip_average=flips)
        for name, value in record.items():
            if name != "epoch":
                log_metric(name, float(value), epoch=epoch + 1)
        progress.history.append(record)
        progress.epoch = epoch + 1
        if env.is_master:
            checkpoint.save(env.checkpoint_dir, net, trainer, progress, with_states=not on_servers)

    if flips:  # the exported graph averages the logits of each image and its mirror (networks.Sequential)
        net.flip_average = True
        net.hybridize(static_alloc=True, static_shape=True)
    final = dict(progress.history[-1]) if progress.history else {}
    final.update(network=hp["network"], epochs=progress.epoch, seconds=time.perf_counter() - started, hosts=workers)
    final["history"] = progress.history
    write_metrics(final, env.paths)
    if env.is_master:
        net(mx.nd.zeros((1, 1, 28, 28), ctx=contexts[0]))  # export needs a traced graph, even on a resumed job
        save_model(net, env.paths.model_dir, hp["network"], class_names)


def learning_rate_schedule(hp: dict, batches: int):
    """Per step: cosine decay from learning_rate to 0 over all epochs, after a linear warm-up from 0 over the
    first warmup_epochs (at most half the steps); None (constant) for lr_schedule=constant."""
    import mxnet as mx

    if hp["lr_schedule"] != "cosine":
        return None
    total_steps = hp["epochs"] * batches
    warmup = min(round(hp["warmup_epochs"] * batches), total_steps // 2)
    return mx.lr_scheduler.CosineScheduler(
        max_update=total_steps, base_lr=hp["learning_rate"], final_lr=0.0, warmup_steps=warmup, warmup_begin_lr=0.0
    )


def save_model(net, model_dir: Path, network: str, class_names) -> None:
    """The hybridized graph and its weights (loadable without our code: SymbolBlock.imports), plus what
    serving needs to know about the classes."""
    model_dir.mkdir(parents=True, exist_ok=True)
    # MXNet writes into a scratch directory; each file is copied into model_dir atomically, so a full disk is
    # an OSError naming the file (the failure file says which), never half a .params file.
    with atomic.staged(model_dir) as scratch:
        net.export(str(scratch / MODEL_PREFIX), epoch=0)
    meta = {"network": network, "class_names": list(class_names), "input_shape": [1, 28, 28], "input_scale": "x/255"}
    atomic.write_json(model_dir / META_FILE, meta, indent=1)
