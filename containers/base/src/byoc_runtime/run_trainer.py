"""Child side of `train` for a family trainer: import BYOC_TRAIN, run it, turn exceptions into a failure file."""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import traceback

from . import interrupt
from .distributed import host_of_tf_task
from .errors import TrainingError
from .failure import disk_full_reason, write_failure
from .training_env import TrainingEnv

log = logging.getLogger("byoc_runtime.trainer")


def run(spec: str) -> int:
    interrupt.install()
    module_name, _, function_name = spec.partition(":")
    try:
        trainer = getattr(importlib.import_module(module_name), function_name or "train")
        trainer(TrainingEnv.load())
    except TrainingError as err:  # the user's to fix: the message says how, a traceback would bury it
        write_failure(str(err))
        return 2
    except interrupt.TrainingInterrupted:
        write_failure("Training was stopped by SIGTERM before it finished (checkpoints, if any, are kept)")
        return 143
    except MemoryError:
        write_failure("Training ran out of memory: use a larger instance type or a smaller mini_batch_size")
        return 1
    except Exception as err:  # noqa: BLE001 - report every failure, with the traceback in the log
        traceback.print_exc()
        disk_full = disk_full_reason(err)  # whatever the framework: name the file, no traceback in the reason
        if disk_full is not None:
            write_failure(disk_full)
            return 1
        peer = host_of_tf_task(str(err))
        if peer is not None:  # a collective operation lost a peer: say which host, not which TensorFlow task
            write_failure(
                f"Lost contact with host {peer[0]} of the training cluster (TensorFlow task {peer[1]}): "
                f"{type(err).__name__}: {_peer_error_summary(str(err))}",
                traceback.format_exc(),
            )
            return 1
        write_failure(f"Training failed: {type(err).__name__}: {err}", traceback.format_exc())
        return 1
    if interrupt.requested():
        write_failure("Training was stopped by SIGTERM before it finished (a checkpoint was saved)")
        return 143
    return 0


_PEER_WORDS = ("unhealthy", "heartbeat", "socket closed", "connection reset", "failed to connect", "unavailable")


def _peer_error_summary(message: str) -> str:
    """The line of a TensorFlow collective error that says what happened to the peer (its messages start with
    the graph node and a stack of frames), without the 'Error reported from /job:...:' preamble."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    line = next((x for x in lines if any(w in x.lower() for w in _PEER_WORDS)), lines[0] if lines else "")
    return re.sub(r"^.*Error reported from /job:\w+(/replica:\d+)?/task:\d+:\s*", "", line)[:300]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = run(sys.argv[1])
    # Everything is written (model, metrics, failure file). Skip interpreter teardown: native finalizers can
    # block there forever, e.g. an MXNet dist kvstore's __del__ waiting in ps-lite for a scheduler that
    # has already gone; the job would then hang after it succeeded or failed.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
