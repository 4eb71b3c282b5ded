"""`train` entry point: `docker run IMAGE train`.

A supervisor around the training code: it reads the job config once, exports SM_*, runs the family's
trainer (BYOC_TRAIN=module:function) or the user's script (script mode; BYOC_SCRIPT_ADAPTER=module:function
lets a family run it its own way) as a child process group,
forwards SIGTERM/SIGINT to it, and makes sure every failure leaves /opt/ml/output/failure behind. In a
multi-host job it also exchanges heartbeats with the other hosts (peers.py) and stops the trainer when a host
is lost, fails or never comes up, with a failure naming that host.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence

from .errors import TrainingError
from .failure import failure_written, write_failure
from .paths import SageMakerPaths
from .peers import PeerWatch, Timeouts
from .training_env import TrainingEnv
from .user_code import install_requirements, materialize, script_command

log = logging.getLogger("byoc_runtime.train")
STDERR_TAIL_LINES = 30
STOP_GRACE_SECONDS = 5


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--help"], ["-h"]):
        return print_help()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = SageMakerPaths.from_env()
    try:
        env = TrainingEnv.load(paths)
        os.environ.update(env.sm_environment())
        command, what = _command(env)
    except TrainingError as err:
        write_failure(str(err), paths=paths)
        return 1
    except Exception as err:  # noqa: BLE001 - anything here is a failed job, reported not raised
        write_failure(f"Could not start training: {type(err).__name__}: {err}", traceback.format_exc(), paths)
        return 1
    log.info("running %s", what)
    return _supervise(command, what, paths, env)


def print_help() -> int:
    """`docker run IMAGE train --help`: the family's hyperparameters (its trainer module's SPEC)."""
    import importlib

    from .hyperparameters import describe

    trainer = os.environ.get("BYOC_TRAIN")
    if not trainer:
        print("This image has no built-in trainer: run your own script with SAGEMAKER_PROGRAM (script mode).")
        return 0
    module = importlib.import_module(trainer.partition(":")[0])
    print(f"{(module.__doc__ or trainer).strip()}\n\nHyperparameters:\n")
    spec = getattr(module, "SPEC", None)
    print(describe(spec) if spec else "(this trainer does not declare them)")
    return 0


def _command(env: TrainingEnv) -> tuple[list[str], str]:
    program = env.program
    if program:
        code_dir = materialize(env.submit_directory, env.paths.code_dir)
        install_requirements(code_dir)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code_dir), os.environ.get("PYTHONPATH")]))
        os.chdir(code_dir)
        adapter = os.environ.get("BYOC_SCRIPT_ADAPTER")
        if adapter:
            # A family that runs older script interfaces (e.g. a script that only defines train()) gets the
            # script's directory as cwd and on PYTHONPATH, and decides how to run it.
            return [sys.executable, "-m", "byoc_runtime.run_trainer", adapter], f"the training script {program!r}"
        return script_command(program, code_dir, env.user_args()), f"the training script {program!r}"
    trainer = os.environ.get("BYOC_TRAIN")
    if not trainer:
        raise TrainingError(
            "This image has no built-in trainer (BYOC_TRAIN is unset): give an entry point with "
            "SAGEMAKER_PROGRAM or the sagemaker_program hyperparameter"
        )
    return [sys.executable, "-m", "byoc_runtime.run_trainer", trainer], f"the trainer {trainer}"


def _supervise(command: list[str], what: str, paths: SageMakerPaths, env: TrainingEnv | None = None) -> int:
    problems: list[str] = []  # a peer host lost, failed or never up (peers.py): the job's failure, whatever else
    running: dict[str, subprocess.Popen] = {}

    def peer_problem(reason: str) -> None:  # from the watch thread
        problems.append(reason)
        _stop(running.get("child"))

    try:
        watch = _watch_peers(env, peer_problem)
    except TrainingError as err:
        write_failure(str(err), paths=paths)
        return 1
    # Own process group, so SIGTERM reaches helpers the trainer starts (parameter servers, workers).
    child = subprocess.Popen(command, stderr=subprocess.PIPE, process_group=0)
    running["child"] = child
    if problems:  # the watch found a problem before the trainer had started
        _stop(child)
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    reader = threading.Thread(target=_tee, args=(child.stderr, tail), daemon=True)
    reader.start()
    stopped_by: list[int] = []

    def forward(signum: int, _frame) -> None:
        stopped_by.append(signum)
        log.info("forwarding %s to %s", signal.Signals(signum).name, what)
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    returncode = child.wait()
    reader.join(timeout=5)
    if problems:
        write_failure(problems[0], "Last lines of stderr:\n" + "\n".join(tail), paths)
        returncode = 1
    elif returncode == 0:
        log.info("training finished")
    elif not failure_written(paths):
        _report(returncode, what, list(tail), stopped_by, paths)
    if watch is not None:  # let the peers see how this host ended before the container goes
        watch.finish(returncode == 0, _first_line(paths.failure_file) if returncode else "")
    if returncode == 0:
        return 0
    return returncode if returncode > 0 else 128 - returncode


def _watch_peers(env: TrainingEnv | None, on_problem) -> PeerWatch | None:
    """Heartbeats with the other hosts of a multi-host job (peers.py); None on one host."""
    if env is None or len(env.hosts) < 2:
        return None
    timeouts = Timeouts.from_env()
    try:
        return PeerWatch(env.hosts, env.current_host, timeouts, on_problem=on_problem).start()
    except OSError as err:
        raise TrainingError(
            f"Could not listen for the other hosts' heartbeats on port {timeouts.port}: {err} "
            "(choose another with BYOC_HEARTBEAT_PORT)"
        ) from None


def _stop(child: subprocess.Popen | None) -> None:
    """Stop the trainer's process group: SIGTERM, then SIGKILL: a trainer blocked in a collective operation
    (MXNet's kvstore waiting for a dead peer) never returns to Python to act on SIGTERM."""
    if child is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=STOP_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            log.warning("the trainer did not stop within %d s of SIGTERM; killing it", STOP_GRACE_SECONDS)


def _first_line(path) -> str:
    try:
        return path.read_text().strip().splitlines()[0]
    except (OSError, IndexError):
        return ""


def _tee(stream, tail: collections.deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        sys.stderr.buffer.write(raw)
        sys.stderr.buffer.flush()
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail.append(line)


def _report(returncode: int, what: str, tail: list[str], stopped_by: list[int], paths: SageMakerPaths) -> None:
    if stopped_by:
        reason = f"Training was stopped by {signal.Signals(stopped_by[0]).name} before it finished"
    elif returncode < 0:
        reason = f"{what} was killed by {signal.Signals(-returncode).name} (out of memory?)"
    else:
        last = next((line for line in reversed(tail) if not line.startswith(" ")), "")
        reason = f"{what} exited with code {returncode}" + (f": {last}" if last else "")
    write_failure(reason, "Last lines of stderr:\n" + "\n".join(tail), paths)


if __name__ == "__main__":
    sys.exit(main())
