"""Multi-host training set-up from resourceconfig.json: MXNet ps-lite roles and TensorFlow's TF_CONFIG.

Every host runs the same image; hosts[0] is the master and alone writes the model (decide that with
TrainingEnv.is_master, never with the kvstore rank: ps-lite ranks do not follow host order).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time

from .errors import TrainingError
from .peers import startup_timeout
from .training_env import TrainingEnv

log = logging.getLogger(__name__)
PS_ROOT_PORT = 9091
TF_PORT = 2222


def resolve_ip(host: str, timeout: float | None = None) -> str:
    """ps-lite's scheduler must bind an IP address; a hostname fails with 'bind failed'. DNS for the
    other hosts may lag the container start, so retry until it resolves (BYOC_STARTUP_TIMEOUT)."""
    timeout = startup_timeout() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.gethostbyname(host)
        except socket.gaierror:
            if time.monotonic() > deadline:
                raise TrainingError(
                    f"Host {host} of the training cluster did not come up within {timeout:g} s "
                    "(BYOC_STARTUP_TIMEOUT): its name never resolved"
                ) from None
            time.sleep(1)


def kvstore_type(env: TrainingEnv, requested: str | None = None) -> str:
    """'local' (1 host, CPU or 1 GPU), 'device' (1 host, several GPUs), 'dist_sync' / 'dist_device_sync'."""
    if requested and requested != "auto":
        return requested
    if len(env.hosts) > 1:
        return "dist_device_sync" if env.num_gpus > 1 else "dist_sync"
    return "device" if env.num_gpus > 1 else "local"


def mxnet_ps_environment(env: TrainingEnv, port: int = PS_ROOT_PORT) -> dict[str, str]:
    return {
        "DMLC_PS_ROOT_URI": resolve_ip(env.hosts[0]),
        "DMLC_PS_ROOT_PORT": str(port),
        "DMLC_NUM_WORKER": str(len(env.hosts)),
        "DMLC_NUM_SERVER": str(len(env.hosts)),
        "DMLC_INTERFACE": env.network_interface_name,
        "PS_VERBOSE": os.environ.get("PS_VERBOSE", "0"),
    }


def start_mxnet_parameter_servers(env: TrainingEnv, port: int = PS_ROOT_PORT) -> list[subprocess.Popen]:
    """For a multi-host job: start the scheduler (hosts[0] only) and this host's server as child processes,
    and make this process a worker. Call BEFORE `import mxnet`: ps-lite reads DMLC_* at import.
    Returns the children (they exit on their own when the workers finish). No-op on one host."""
    if len(env.hosts) < 2:
        return []
    common = mxnet_ps_environment(env, port)
    roles = (["scheduler"] if env.is_master else []) + ["server"]
    children = []
    for role in roles:
        child_env = {**os.environ, **common, "DMLC_ROLE": role}
        # Importing mxnet with DMLC_ROLE=scheduler|server runs that role until the job ends.
        children.append(subprocess.Popen([sys.executable, "-c", "import mxnet"], env=child_env))
        log.info("started ps-lite %s (pid %d)", role, children[-1].pid)
    os.environ.update(common)
    os.environ["DMLC_ROLE"] = "worker"
    return children


def stop_children(children: list[subprocess.Popen], timeout: float = 30.0) -> None:
    for child in children:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.terminate()


def tf_config(env: TrainingEnv, port: int = TF_PORT, parameter_servers: bool = False) -> dict:
    """TF_CONFIG for MultiWorkerMirroredStrategy (every host a worker), or with a ps task per host."""
    workers = [f"{host}:{port}" for host in env.hosts]
    if not parameter_servers:
        return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": env.host_rank}}
    cluster = {
        "chief": [workers[0]],
        "worker": workers[1:],
        "ps": [f"{host}:{port + 1}" for host in env.hosts],
    }
    task = {"type": "chief", "index": 0} if env.is_master else {"type": "worker", "index": env.host_rank - 1}
    return {"cluster": {k: v for k, v in cluster.items() if v}, "task": task}


_TF_TASK = re.compile(r"/job:(?P<job>chief|worker|ps)(?:/replica:\d+)?/task:(?P<index>\d+)")


def host_of_tf_task(message: str, config: dict | None = None) -> tuple[str, str] | None:
    """(host, task) for the first TensorFlow task a message names (/job:worker/replica:0/task:1), from
    TF_CONFIG: TensorFlow's errors about a lost peer name the task, users know the host (algo-2)."""
    if config is None:
        try:
            config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        except ValueError:
            return None
    for match in _TF_TASK.finditer(message):
        addresses = config.get("cluster", {}).get(match["job"], [])
        index = int(match["index"])
        if index < len(addresses):
            task = f"/job:{match['job']}/task:{index}"
            if config.get("task", {}).get("type") == match["job"] and config["task"].get("index") == index:
                continue  # this host's own task
            return addresses[index].rsplit(":", 1)[0], task
    return None


def export_tf_config(env: TrainingEnv, **kwargs) -> dict | None:
    if len(env.hosts) < 2:
        return None
    config = tf_config(env, **kwargs)
    os.environ["TF_CONFIG"] = json.dumps(config)
    return config
