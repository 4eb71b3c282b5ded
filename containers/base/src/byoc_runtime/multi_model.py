"""Multi-model endpoints: the container side of SageMaker's MME contract, for every family.

SageMaker (or anyone playing its part) loads and unloads models by name: POST /models {"model_name", "url"},
GET /models (paged), GET /models/{name}, DELETE /models/{name}, POST /models/{name}/invoke. The url is a directory
the platform has already extracted a model.tar.gz into; the family's own model_fn loads it.

Every serving worker must see the same set of loaded models (a load arrives at one worker, the invocations at
any), so the set lives in a registry shared by the workers: a log of loads and unloads in a directory of the
container (tmpfs where there is one), appended under an flock (see Registry). Each worker keeps its own copy
of each registered model, loaded by a background thread as soon as another worker registered it (follow()) or
on its first invocation there, whichever comes first; a model a request is using stays valid until that
request is answered, even if it is unloaded meanwhile (the request gets its prediction; later ones 404). No
request sees a half-loaded model: a model is published to a worker only once model_fn has returned.

Memory: a model is estimated at the size of its files, once per worker (each worker holds its own copy). A load
that would take the registered models over the budget (BYOC_MME_MEMORY_MB; default 70 % of the container's
memory limit) answers 507, the contract's answer, so that SageMaker unloads its least-used models and retries;
the container never drops a model SageMaker believes loaded. Outside SageMaker, where nobody else unloads,
BYOC_MME_EVICT=lru makes the container unload its least recently invoked models itself instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadRequest, InvocationError

log = logging.getLogger(__name__)
MULTI_MODEL_ENV = "SAGEMAKER_MULTI_MODEL"  # "true" on a multi-model endpoint, as the DLC toolkits read it
STATE_DIR_ENV = "BYOC_MME_STATE_DIR"  # set by serve before forking: the registry every worker shares
BUDGET_ENV = "BYOC_MME_MEMORY_MB"
EVICT_ENV = "BYOC_MME_EVICT"
FOLLOW_ENV = "BYOC_MME_FOLLOW"
BUDGET_SHARE = 0.7  # of the container's memory limit, by default: the rest is the server, requests, answers
PAGE_SIZE = 100  # GET /models: models per page unless ?limit= says otherwise
FOLLOW_SECONDS = 0.01  # how often a worker looks for models other workers loaded (one stat() a look)
TOUCH_SECONDS = 1.0  # a worker records a model's last use at most this often (LRU eviction reads it)


class ModelNotLoaded(InvocationError):
    status = 404
    error_type = "ModelNotFound"


class ModelDirectoryNotFound(InvocationError):
    status = 404
    error_type = "ModelDirectoryNotFound"


class ModelAlreadyLoaded(InvocationError):
    status = 409
    error_type = "ModelAlreadyLoaded"


class InvalidModel(InvocationError):
    status = 400
    error_type = "InvalidModel"


class InsufficientMemory(InvocationError):
    status = 507
    error_type = "InsufficientMemory"


@dataclass(frozen=True)
class Entry:
    name: str
    url: str
    size_bytes: int
    loaded_at: float  # when it was registered: a worker's copy of an older registration is stale

    def describe(self) -> dict[str, str]:
        return {"modelName": self.name, "modelUrl": self.url}


def following(environ: dict[str, str] | None = None) -> bool:
    """Whether each worker loads the models the others load as they load them (BYOC_MME_FOLLOW, default on)
    rather than on its first invocation of each."""
    env = os.environ if environ is None else environ
    return (env.get(FOLLOW_ENV) or "true").strip().lower() not in ("0", "false", "no", "off")


def container_memory_bytes() -> int:
    """The container's memory limit (cgroup v2 or v1), or the machine's memory where there is none."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:
            return int(text)
    return physical


def budget_bytes(environ: dict[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    given = env.get(BUDGET_ENV)
    if given:
        return int(float(given) * 1024 * 1024)
    return int(container_memory_bytes() * BUDGET_SHARE)


def directory_bytes(path: Path) -> int:
    """The size of the files under `path` (os.scandir: a few times cheaper than Path.rglob on a load's path)."""
    total = 0
    with os.scandir(path) as found:
        for entry in found:
            if entry.is_dir(follow_symlinks=False):
                total += directory_bytes(Path(entry.path))
            elif entry.is_file():
                total += entry.stat().st_size
    return total


def new_state_dir() -> Path:
    """A directory for the registry, on tmpfs where the container has one."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="byoc-mme-", dir=base))


class Registry:
    """The loaded models' names, urls and sizes, shared by every worker through files in `directory`.

    The registry is a log, models.log: one JSON line a change ({"load": entry} or {"unload": name}), appended
    under an flock. Each process keeps the registered models in memory and reads only the lines appended since
    it last looked (one stat() a call when nothing changed), so a load or an unload costs every worker a line,
    not a re-read of every model. Once the log is much longer than the set it describes, the writer holding the
    lock rewrites it as one line a model and renames it over the old one; the other processes see a new inode
    and read the new file from its start.
    """

    COMPACT_LINES = 256  # rewrite the log once it has this many lines and 4x as many as registered models

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "used").mkdir(exist_ok=True)
        self._file = self.directory / "models.log"
        self._lock_file = self.directory / "models.lock"
        self._entries: dict[str, Entry] = {}  # replaced, never changed in place: callers may hold the old one
        self._position: tuple[int, int] = (-1, 0)  # (inode, bytes read) of the log as self._entries has it
        self._lines = 0
        self._threads = threading.Lock()  # flock excludes other processes; this, the other threads of this one
        self._lock_fd: tuple[int, int] | None = None  # (pid, fd): a forked worker opens its own

    def entries(self) -> dict[str, Entry]:
        """The registered models: one stat() a call; only the lines appended since the last call are read."""
        try:
            stat = os.stat(self._file)
        except FileNotFoundError:  # nothing was ever registered (or the directory was removed)
            if self._entries:
                with self._threads:
                    self._entries, self._position, self._lines = {}, (-1, 0), 0
            return self._entries
        if (stat.st_ino, stat.st_size) != self._position:
            with self._threads:
                self._catch_up()
        return self._entries

    def _catch_up(self) -> None:
        """Apply the lines appended since the last read (all of them, from an empty set, if the log was
        replaced); only whole lines: a line being appended is read once its newline is there."""
        try:
            with open(self._file, "rb") as log_file:
                inode = os.fstat(log_file.fileno()).st_ino
                entries, offset, lines = self._entries, self._position[1], self._lines
                if inode != self._position[0]:
                    entries, offset, lines = {}, 0, 0
                log_file.seek(offset)
                data = log_file.read()
        except FileNotFoundError:
            self._entries, self._position, self._lines = {}, (-1, 0), 0
            return
        complete = data[: data.rfind(b"\n") + 1]
        if complete:
            entries = dict(entries)
            for line in complete.splitlines():
                change = json.loads(line)
                if "load" in change:
                    entries[change["load"]["name"]] = Entry(**change["load"])
                else:
                    entries.pop(change["unload"], None)
                lines += 1
        self._entries, self._position, self._lines = entries, (inode, offset + len(complete)), lines

    @contextlib.contextmanager
    def changing(self) -> Iterator[dict[str, Entry]]:
        """The registered models, under the registry's lock; what the block leaves in the dict is written back."""
        with self._threads:
            fd = self._lock()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._catch_up()
                before = self._entries
                entries = dict(before)
                yield entries
                self._append(before, entries)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _lock(self) -> int:
        pid = os.getpid()
        if self._lock_fd is None or self._lock_fd[0] != pid:  # an inherited fd would share the parent's flock
            self._lock_fd = (pid, os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600))
        return self._lock_fd[1]

    def _append(self, before: dict[str, Entry], after: dict[str, Entry]) -> None:
        changes = [{"unload": name} for name in before if name not in after]
        changes += [{"load": vars(entry)} for name, entry in after.items() if before.get(name) != entry]
        if not changes:
            return
        if self._lines + len(changes) >= max(self.COMPACT_LINES, 4 * len(after)):
            self._rewrite(after)
            return
        text = "".join(json.dumps(change) + "\n" for change in changes).encode()
        fd = os.open(self._file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, text)  # one write: a reader sees all of these lines or none (it reads whole lines)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        if inode == self._position[0]:
            self._position = (inode, self._position[1] + len(text))
            self._entries, self._lines = after, self._lines + len(changes)
        else:  # the log did not exist before this write
            self._entries, self._position, self._lines = {}, (-1, 0), 0
            self._catch_up()

    def _rewrite(self, entries: dict[str, Entry]) -> None:
        text = "".join(json.dumps({"load": vars(entry)}) + "\n" for entry in entries.values()).encode()
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".models-", suffix=".log")
        with os.fdopen(fd, "wb") as out:
            out.write(text)
            inode = os.fstat(out.fileno()).st_ino
        os.replace(temporary, self._file)  # readers see the old file or the new one, never half of one
        self._entries, self._position, self._lines = entries, (inode, len(text)), len(entries)

    def _used_file(self, name: str) -> Path:
        return self.directory / "used" / hashlib.sha1(name.encode()).hexdigest()

    def touch(self, name: str) -> None:
        path = self._used_file(name)
        try:
            os.utime(path)
        except FileNotFoundError:
            path.touch()

    def last_used(self, name: str) -> float:
        try:
            return self._used_file(name).stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def forget(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._used_file(name).unlink()


class MultiModelServer:
    """One worker's side: loads (checked against the budget), invocations' models, unloads, listing."""

    def __init__(
        self,
        model_fn: Callable[[str], Any],
        registry: Registry,
        *,
        budget: int,
        workers: int,
        evict_lru: bool = False,
    ):
        self.model_fn, self.registry = model_fn, registry
        self.budget, self.workers, self.evict_lru = budget, max(1, workers), evict_lru
        self._models: dict[str, tuple[float, Any]] = {}  # name -> (loaded_at of the registration, model)
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._touched: dict[str, float] = {}
        self._seen: dict[str, Entry] | None = None  # the registry as this worker last pruned its copies by it
        # A single-model endpoint serving archives by target (SDK local mode): nobody else unloads, so evict.
        self.archives_only = False

    @classmethod
    def from_env(cls, model_fn: Callable[[str], Any], workers: int) -> MultiModelServer:
        directory = os.environ.get(STATE_DIR_ENV)
        registry = Registry(Path(directory) if directory else new_state_dir())
        evict = (os.environ.get(EVICT_ENV) or "").strip().lower() == "lru"
        return cls(model_fn, registry, budget=budget_bytes(), workers=workers, evict_lru=evict)

    # --- the contract's calls -------------------------------------------------------------------------------

    def load(self, request: Any, target: str | None = None) -> dict[str, str]:
        """POST /models: load the model at `url` as `model_name`."""
        if not isinstance(request, dict):
            raise BadRequest('expected {"model_name": ..., "url": ...}')
        name, url = request.get("model_name"), request.get("url")
        if not isinstance(name, str) or not name or "/" in name:
            raise BadRequest(f"model_name must be a non-empty string without '/', got {name!r}")
        if not isinstance(url, str) or not url:
            raise BadRequest(f"url must be the directory of the model, got {url!r}")
        path = Path(url)
        if not path.is_dir():
            raise ModelDirectoryNotFound(f"Model directory {url} does not exist")
        if name in self.registry.entries():
            raise ModelAlreadyLoaded(f"Model {name} is already loaded")
        size = directory_bytes(path)
        if not self._evicting:  # a 507 before the work of loading, where it is sure
            self._make_room(dict(self.registry.entries()), name, size)
        # Loaded outside the registry's lock: other loads and unloads do not wait for this model_fn.
        model, seconds = self._load(name, path)
        with self.registry.changing() as entries:
            if name in entries:  # registered by another worker meanwhile
                raise ModelAlreadyLoaded(f"Model {name} is already loaded")
            self._register(entries, name, path, target, size, (model, seconds))
        return {"status": f"Model {name} loaded", "modelName": name, "modelUrl": url}

    def _load(self, name: str, path: Path) -> tuple[Any, float]:
        started = time.perf_counter()
        try:
            return self.model_fn(str(path)), time.perf_counter() - started
        except Exception as err:  # noqa: BLE001 - the platform's directory is not a model of this image
            log.warning("model %s at %s could not be loaded: %s: %s", name, path, type(err).__name__, err)
            raise InvalidModel(f"{path} is not a model this image can serve: {type(err).__name__}: {err}") from None

    def _register(
        self,
        entries: dict[str, Entry],
        name: str,
        path: Path,
        target: str | None,
        size: int,
        loaded: tuple[Any, float] | None = None,
    ) -> Any:
        """Register the model at `path` (loading it here unless `loaded`); the registry's lock is held."""
        self._make_room(entries, name, size)
        model, seconds = loaded or self._load(name, path)
        entry = Entry(name=name, url=str(path), size_bytes=size, loaded_at=time.time())
        entries[name] = entry
        with self._lock:
            self._models[name] = (entry.loaded_at, model)
        if self._evicting:  # only eviction reads the last use
            self.registry.touch(name)
        log.info("loaded model %s from %s (%d bytes, %.3f s; target model %s)", name, path, size, seconds,
                 target or "-")  # fmt: skip
        return model

    def archive_model(self, model_dir: Path, target: str) -> Any:
        """The model of an invocation whose X-Amzn-SageMaker-Target-Model names a model.tar.gz under the model
        directory: how the SageMaker SDK's local mode runs a MultiDataModel (it mounts the models' S3 prefix at
        /opt/ml/model, tells the container nothing else, and sends each invocation to /invocations with the
        header). The container then plays SageMaker's part itself: the archive is extracted once (safely) into
        the registry's directory, loaded on first use, and unloaded least recently used first over the budget."""
        root = Path(model_dir).resolve()
        archive = (root / target).resolve()
        if root not in archive.parents or not archive.is_file():
            raise ModelNotLoaded(f"No model archive {target} under the model directory")
        if target in self.registry.entries():
            return self.model(target)
        from .archive import safe_extract  # the same safe extraction the single-model path uses

        with self.registry.changing() as entries:
            if target not in entries:
                extracted = self.registry.directory / "archives" / hashlib.sha1(target.encode()).hexdigest()
                if extracted.exists():
                    shutil.rmtree(extracted)
                safe_extract(archive, extracted)
                self._register(entries, target, extracted, target, directory_bytes(extracted))
        return self.model(target)

    def _make_room(self, entries: dict[str, Entry], name: str, size: int) -> None:
        def need() -> int:
            return (sum(e.size_bytes for e in entries.values()) + size) * self.workers

        while need() > self.budget:
            if not self._evicting or not entries:
                raise InsufficientMemory(
                    f"Loading model {name} ({size} bytes a worker, {self.workers} workers) would take the loaded "
                    f"models to {need()} bytes, over this container's budget of {self.budget} bytes "
                    f"({BUDGET_ENV}); unload a model and retry"
                )
            victim = min(entries, key=self.registry.last_used)
            log.info("unloading model %s, the least recently used, to make room for %s", victim, name)
            del entries[victim]
            self.registry.forget(victim)
        if size * self.workers > self.budget:
            raise InsufficientMemory(f"Model {name} alone ({size} bytes a worker) is over the budget")

    def unload(self, name: str) -> dict[str, str]:
        """DELETE /models/{name}."""
        with self.registry.changing() as entries:
            if name not in entries:
                raise ModelNotLoaded(f"Model {name} is not loaded")
            del entries[name]
        self.registry.forget(name)
        with self._lock:
            self._models.pop(name, None)
        log.info("unloaded model %s", name)
        return {"status": f"Model {name} unloaded"}

    def describe(self, name: str) -> dict[str, str]:
        """GET /models/{name}."""
        entry = self.registry.entries().get(name)
        if entry is None:
            raise ModelNotLoaded(f"Model {name} is not loaded")
        return entry.describe()

    def listing(self, limit: str | None, token: str | None) -> dict[str, Any]:
        """GET /models: names in order, `limit` a page; nextPageToken where more follow."""
        try:
            size = int(limit) if limit else PAGE_SIZE
            start = int(token) if token else 0
        except ValueError:
            raise BadRequest(f"limit and next_page_token must be whole numbers, got {limit!r}, {token!r}") from None
        if size < 1 or start < 0:
            raise BadRequest("limit must be at least 1 and next_page_token not negative")
        entries = sorted(self.registry.entries().values(), key=lambda e: e.name)
        page = {"models": [e.describe() for e in entries[start : start + size]]}
        if start + size < len(entries):
            page["nextPageToken"] = str(start + size)
        return page

    def model(self, name: str) -> Any:
        """The model an invocation of `name` runs: this worker's copy (loaded by follow() as soon as another
        worker registered it, or here on first use)."""
        entries = self.registry.entries()
        if entries is not self._seen:  # the registry changed: drop the copies of models unloaded meanwhile
            self._prune(entries)
        entry = entries.get(name)
        if entry is None:
            raise ModelNotLoaded(f"Model {name} is not loaded")
        self._note_use(name)
        held = self._current(entry)
        return held[1] if held is not None else self._copy(entry, "on its first invocation here")

    def _current(self, entry: Entry) -> tuple[float, Any] | None:
        """This worker's copy of the registration `entry`, if it holds that one (not an older registration)."""
        held = self._models.get(entry.name)
        return held if held is not None and held[0] == entry.loaded_at else None

    def _copy(self, entry: Entry, why: str) -> Any:
        """This worker's copy of a registered model, loading it unless it is there: one load per model in a
        worker, whoever asks (an invocation, the follower); the others wait for it."""
        with self._lock:
            gate = self._loading.setdefault(entry.name, threading.Lock())
        with gate:
            held = self._current(entry)
            if held is not None:
                return held[1]
            model = self.model_fn(entry.url)
            with self._lock:
                self._models[entry.name] = (entry.loaded_at, model)
        now = self.registry.entries()
        if now.get(entry.name) != entry:  # unloaded while it loaded: keep no stale copy
            self._prune(now)
        log.info("model loaded: %s, in this worker %s", entry.name, why)
        return model

    def follow(self, interval: float = FOLLOW_SECONDS) -> threading.Thread:
        """Keep this worker's copies in step with the registry from a background thread: a model another
        worker loads is loaded here too within `interval`, so an invocation routed here finds it ready
        instead of waiting for model_fn (the budget already counts a copy in every worker)."""
        thread = threading.Thread(target=self._follow, args=(interval,), name="mme-follower", daemon=True)
        thread.start()
        return thread

    def _follow(self, interval: float) -> None:
        followed: dict[str, Entry] | None = None
        while True:
            time.sleep(interval)
            try:
                entries = self.registry.entries()
                if entries is followed:
                    continue
                followed = entries
                self._prune(entries)
                for entry in list(entries.values()):
                    if self._current(entry) is None and self.registry.entries().get(entry.name) == entry:
                        self._copy(entry, "as another worker loaded it")  # (and not unloaded since)
            except Exception:  # noqa: BLE001 - a model that fails here fails its invocation, which says why
                log.exception("loading the registered models in this worker failed; invocations load them")

    def _prune(self, entries: dict[str, Entry]) -> None:
        with self._lock:
            for name, (loaded_at, _) in list(self._models.items()):
                entry = entries.get(name)
                if entry is None or entry.loaded_at != loaded_at:
                    del self._models[name]
            self._seen = entries

    @property
    def _evicting(self) -> bool:
        return self.evict_lru or self.archives_only

    def _note_use(self, name: str) -> None:
        if not self._evicting:
            return
        now = time.monotonic()
        if now - self._touched.get(name, 0.0) >= TOUCH_SECONDS:
            self._touched[name] = now
            self.registry.touch(name)
