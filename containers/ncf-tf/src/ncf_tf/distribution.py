"""Several hosts: synchronous all-reduce (MultiWorkerMirroredStrategy, the default) or parameter servers
(sagemaker_parameter_server_enabled, as the course's `distribution={"parameter_server": {"enabled": True}}`).

Parameter-server layout (TF_CONFIG from byoc_runtime.distributed): hosts[0] is the chief and runs the training
loop (ParameterServerStrategy's coordinator); every other host runs a worker task; every host runs a ps task
holding a share of the variables. The ps and worker tasks are gRPC servers in child processes with no end of
their own: they watch the chief's port and exit 0 once the chief, having been up, is gone.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from byoc_runtime import distributed
from byoc_runtime.errors import TrainingError
from byoc_runtime.training_env import TrainingEnv

CHIEF_GONE_CHECKS = 3  # consecutive refused connections that mean the chief has finished


def export(env: TrainingEnv, parameter_servers: bool) -> dict | None:
    """Set TF_CONFIG for this host's training process (before TensorFlow starts)."""
    return distributed.export_tf_config(env, parameter_servers=parameter_servers)


def strategy(env: TrainingEnv, parameter_servers: bool):
    import tensorflow as tf

    if len(env.hosts) < 2:
        return tf.distribute.get_strategy()
    if parameter_servers:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        return tf.distribute.ParameterServerStrategy(resolver)
    return tf.distribute.MultiWorkerMirroredStrategy()


def start_servers(env: TrainingEnv) -> list[subprocess.Popen]:
    """This host's ps task, and on hosts other than the chief its worker task, as child processes."""
    config = distributed.tf_config(env, parameter_servers=True)
    tasks = [("ps", env.host_rank)] + ([] if env.is_master else [("worker", env.host_rank - 1)])
    chief = config["cluster"]["chief"][0]
    children = []
    for job, index in tasks:
        task_config = json.dumps({"cluster": config["cluster"], "task": {"type": job, "index": index}})
        child_env = {**os.environ, "TF_CONFIG": task_config}
        command = [sys.executable, "-m", "ncf_tf.distribution", job, str(index), chief]
        children.append(subprocess.Popen(command, env=child_env))
        print(f"started the {job} task {index} (pid {children[-1].pid})", flush=True)
    return children


def wait(children: list[subprocess.Popen]) -> None:
    codes = [child.wait() for child in children]
    if any(codes):
        raise TrainingError(f"a parameter-server task of this host failed (exit codes {codes})")


def stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        child.terminate()
    for child in children:
        child.wait(timeout=30)


def chief_done(address: str, appear_timeout: float | None = None, poll: float = 1.0) -> None:
    """Block until the chief at host:port has been reachable and then refuses connections. It must come up
    within BYOC_STARTUP_TIMEOUT."""
    appear_timeout = distributed.startup_timeout() if appear_timeout is None else appear_timeout
    host, port = address.rsplit(":", 1)
    seen, gone, deadline = False, 0, time.monotonic() + appear_timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                seen, gone = True, 0
        except OSError:
            if seen:
                gone += 1
                if gone >= CHIEF_GONE_CHECKS:
                    return
            elif time.monotonic() > deadline:
                raise TrainingError(f"the chief {address} did not come up within {appear_timeout:.0f} s") from None
        time.sleep(poll)


def _serve(job: str, index: int, chief: str) -> None:
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    tf.distribute.Server(resolver.cluster_spec(), job_name=job, task_index=index, protocol="grpc", start=True)
    chief_done(chief)
    print(f"{job} task {index}: the chief has finished", flush=True)
    os._exit(0)  # the gRPC server has no clean shutdown; its work is done


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
