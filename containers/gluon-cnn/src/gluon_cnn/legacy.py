"""Runs a training script written for the old SageMaker MXNet interface (BYOC_SCRIPT_ADAPTER).

Such a script defines `train(hyperparameters, channel_input_dirs, hosts, current_host, num_gpus, ...)`
returning the trained net, optionally `save(net, model_dir)`, and for serving `model_fn` / `transform_fn`
(served by the runtime as an inference script). A script with an `if __name__ == "__main__":` block is a
modern script-mode script instead and runs as __main__ with the hyperparameters as arguments.
"""

from __future__ import annotations

import inspect
import runpy
import sys
from pathlib import Path
from typing import Any

from byoc_runtime import atomic, distributed
from byoc_runtime.errors import TrainingError
from byoc_runtime.training_env import TrainingEnv
from byoc_runtime.user_code import load_module


def legacy_arguments(env: TrainingEnv) -> dict[str, Any]:
    """The keyword arguments the old MXNet container passed to train()."""
    return {
        "hyperparameters": dict(env.hyperparameters),
        "input_data_config": env.input_data_config,
        "channel_input_dirs": {name: str(channel.path) for name, channel in env.channels.items()},
        "output_data_dir": str(env.paths.output_data_dir),
        "model_dir": str(env.paths.model_dir),
        "num_gpus": env.num_gpus,
        "num_cpus": env.num_cpus,
        "hosts": list(env.hosts),
        "current_host": env.current_host,
        "resource_config": env.resource_config,
    }


def run(env: TrainingEnv) -> None:
    program = env.program or ""
    script = Path.cwd() / program  # the runtime made the code directory our cwd
    if not script.is_file():
        raise TrainingError(f"The entry point {program!r} was not found in {Path.cwd()}")
    # The script imports mxnet at its top: parameter servers must be running before that.
    distributed.start_mxnet_parameter_servers(env)
    if _is_modern(script):
        sys.argv = [str(script), *env.user_args()]
        runpy.run_path(str(script), run_name="__main__")
        return
    module = load_module(script, name=script.stem)
    net = module.train(**_accepted(module.train, legacy_arguments(env)))
    if net is None or not env.is_master:
        return
    model_dir = env.paths.model_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    if callable(getattr(module, "save", None)):
        module.save(net, str(model_dir))
    else:
        default_save(net, model_dir)
    # Ship the script with the model, so `SAGEMAKER_PROGRAM=<script>` serves it from model.tar.gz/code/.
    (model_dir / "code").mkdir(exist_ok=True)
    atomic.copy_file(script, model_dir / "code" / script.name)


def default_save(net, model_dir: Path) -> None:
    """What the course's save() writes, for a script without one: model.json + model.params."""
    import mxnet as mx

    symbol = net(mx.sym.var("data"))
    with atomic.staged(model_dir) as scratch:  # each file copied into place whole (a full disk names it)
        symbol.save(str(scratch / "model.json"))
        net.collect_params().save(str(scratch / "model.params"))


def _accepted(function, arguments: dict[str, Any]) -> dict[str, Any]:
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return arguments
    return {name: value for name, value in arguments.items() if name in parameters}


def _is_modern(script: Path) -> bool:
    text = script.read_text(errors="replace")
    return "__name__" in text and "__main__" in text
