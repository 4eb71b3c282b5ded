"""`serve` entry point: `docker run IMAGE serve`.

gunicorn + Flask on SAGEMAKER_BIND_TO_PORT (default 8080). No --preload: MXNet and TensorFlow are not
fork-safe, so each worker imports the handlers and loads the model after fork. Started as root (SageMaker
does), the workers drop to an unprivileged user (BYOC_SERVE_USER, `byoc`), who can write only to the
temporary directories; started as any other user (`docker run --user`), everything runs as that user.
SIGTERM stops gracefully within SageMaker's 30 s.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import sys
import tarfile
import tempfile
from functools import partial
from pathlib import Path

from gunicorn.app.base import BaseApplication

from . import cpu, model_holder, multi_model
from .archive import UnsafeArchiveError, safe_extract
from .serving_settings import ServingSettings

log = logging.getLogger("byoc_runtime.serve")
CAP_CHOWN, CAP_SETGID, CAP_SETUID = 0, 6, 7  # linux/capability.h
GRACEFUL_SECONDS = 20  # SageMaker sends SIGKILL 30 s after SIGTERM
# gthread means ours: gunicorn's gthread with request deadlines and JSON refusals (server_worker.py).
WORKER_CLASSES = {"gthread": "byoc_runtime.server_worker.ThreadWorker"}


class _Server(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from .app import create_app  # imported in the worker, after fork

        try:
            return create_app(exit_on_load_failure=True)
        except Exception as err:  # noqa: BLE001 - e.g. a user inference.py that does not import
            log.exception("the worker could not start")
            model_holder.fail_worker(f"the worker could not start: {type(err).__name__}: {err}")


def gunicorn_options(settings: ServingSettings, switch_user: bool | None = None) -> dict:
    options = {
        "bind": f"0.0.0.0:{settings.port}",
        "workers": settings.workers,
        "worker_class": WORKER_CLASSES.get(settings.worker_class, settings.worker_class),
        "timeout": settings.timeout,
        "graceful_timeout": GRACEFUL_SECONDS,
        "keepalive": 75,  # longer than SageMaker's frontend keeps idle connections
        "preload_app": False,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": os.environ.get("BYOC_LOG_LEVEL", "info"),
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
    }
    if settings.worker_class == "gthread":
        options["threads"] = settings.threads
    if _switches_user(settings) if switch_user is None else switch_user:
        try:
            record = pwd.getpwnam(settings.user)
            options["user"], options["group"] = record.pw_uid, record.pw_gid
            # gunicorn sets the workers' uid and gid but leaves root's supplementary groups (group 0) to them
            # (its initgroups option would leave the primary gid 0 instead): what only root's group may read
            # would stay readable to them. Drop them in the child, while it is still root.
            options["post_fork"] = partial(_drop_supplementary_groups, record.pw_gid)
        except KeyError:
            log.warning("serving user %r does not exist; workers keep running as root", settings.user)
    return {k: v for k, v in options.items() if v is not None}


def _drop_supplementary_groups(gid: int, _arbiter, _worker) -> None:
    try:
        os.setgroups([gid])
    except OSError as err:  # no CAP_SETGID: _switches_user already said the workers stay as they are
        log.warning("could not drop the worker's supplementary groups: %s", err)


def effective_capabilities() -> int | None:
    """The process's effective capability set (a bit mask), None where /proc does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def _switches_user(settings: ServingSettings) -> bool:
    """Whether the workers can and should switch to the serving user: root with CAP_SETUID and CAP_SETGID.
    Root without them (docker run --cap-drop ALL) cannot: say so, and serve anyway."""
    if not settings.user or os.geteuid() != 0:
        return False
    caps = effective_capabilities()
    if caps is not None and not (caps >> CAP_SETUID & 1 and caps >> CAP_SETGID & 1):
        log.warning(
            "cannot switch the workers to user %r: this container has no CAP_SETUID/CAP_SETGID (--cap-drop ALL?); "
            "they run as root without capabilities. Add --user %s to serve unprivileged.",
            settings.user,
            settings.user,
        )
        return False
    return True


def unpack_model_archive(model_dir: Path) -> Path:
    """If the model directory holds only model.tar.gz (not unpacked by the platform), unpack it safely."""
    archive = model_dir / "model.tar.gz"
    if not archive.is_file() or any(p.name != "model.tar.gz" for p in model_dir.iterdir()):
        return model_dir
    target = Path(tempfile.mkdtemp(prefix="model-"))
    safe_extract(archive, target)
    log.info("unpacked %s into %s", archive, target)
    return target


def _give_to(user: str, directory: Path) -> None:
    """The workers run as `user`: let them read what we unpacked as root."""
    try:
        for path in [directory, *directory.rglob("*")]:
            shutil.chown(path, user)
    except (LookupError, OSError) as err:
        log.warning("could not hand %s to %s: %s", directory, user, err)


def _let_others_enter(directory: Path) -> None:
    """The workers run as the serving user: a model directory only root may enter (SDK local mode mounts a
    mkdtemp directory, mode 0700) would hide the model from them. Open the directory itself (not its files)."""
    try:
        mode = directory.stat().st_mode
        if mode & 0o005 != 0o005:
            directory.chmod(mode | 0o005)
            log.info("let the serving user into %s (it was mode %o)", directory, mode & 0o777)
    except OSError as err:  # a read-only mount: say why the workers may not find the model
        log.warning("the serving user may not be able to read %s: %s", directory, err)


def main() -> int:
    # The pid tells the workers apart (gunicorn's own lines carry it too).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    settings = ServingSettings.from_env()
    switch_user = _switches_user(settings)
    # The registry of loaded models every worker shares (multi_model.py), made before the workers fork: a
    # multi-model endpoint's, or a single-model endpoint's that is asked for archives by Target-Model.
    state = multi_model.new_state_dir()
    os.environ[multi_model.STATE_DIR_ENV] = str(state)
    if switch_user:
        _give_to(settings.user, state)
    if settings.multi_model:
        log.info("multi-model endpoint: models are loaded by POST /models (registry %s, budget %d MB)", state,
                 multi_model.budget_bytes() // 2**20)  # fmt: skip
    try:
        model_dir = unpack_model_archive(settings.model_dir) if settings.model_dir.is_dir() else settings.model_dir
    except (UnsafeArchiveError, tarfile.TarError, OSError) as err:
        log.error("cannot serve: %s/model.tar.gz could not be unpacked: %s", settings.model_dir, err)
        return 1
    if model_dir != settings.model_dir:
        os.environ["SM_MODEL_DIR"] = str(model_dir)
        if switch_user:
            _give_to(settings.user, model_dir)
    elif switch_user and model_dir.is_dir():
        _let_others_enter(model_dir)
    log.info(
        "serving on port %d with %d %s worker(s), timeout %d s",
        settings.port,
        settings.workers,
        settings.worker_class,
        settings.timeout,
    )
    # Read by the frameworks and BLAS when the workers import them, after fork
    os.environ.update(cpu.serving_thread_environment(settings.workers))
    options = gunicorn_options(settings, switch_user)
    # A worker that cannot load the model reports why through this pipe and exits with gunicorn's boot-error
    # code; gunicorn then stops every worker and calls on_exit, where the reason becomes the last log line.
    options["on_exit"] = partial(_say_why_workers_failed, model_holder.listen_for_failures())
    _Server(options).run()
    return 0


def _say_why_workers_failed(failures: int, _arbiter) -> None:
    reasons = model_holder.read_failures(failures)
    if reasons:
        log.error("cannot serve: %s", reasons[0])


if __name__ == "__main__":
    sys.exit(main())
