"""Multi-model endpoints: the container side of SageMaker's MME contract, for every family.

SageMaker (or anyone playing its part) loads and unloads models by name: POST /models {"model_name", "url"},
GET /models (paged), GET /models/{name}, DELETE /models/{name}, POST /models/{name}/invoke. The url is a directory
the platform has already extracted a model.tar.gz into; the family's own model_fn loads it.

Every serving worker must see the same set of loaded models (a load arrives at one worker, the invocations at
any), so the set lives in a registry shared by the workers: a JSON file in a directory of the container (tmpfs
where there is one), rewritten whole and renamed under an flock. Each worker keeps its own copy of the model
objects it has been asked for and loads a registered model on its first invocation there; a model a request is
using stays valid until that request is answered, even if it is unloaded meanwhile (the request gets its
prediction; later ones 404). No request sees a half-loaded model: a model is published to a worker only once
model_fn has returned.

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
BUDGET_SHARE = 0.7  # of the container's memory limit, by default: the rest is the server, requests, answers
PAGE_SIZE = 100  # GET /models: models per page unless ?limit= says otherwise
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
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def new_state_dir() -> Path:
    """A directory for the registry, on tmpfs where the container has one."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="byoc-mme-", dir=base))


class Registry:
    """The loaded models' names, urls and sizes, shared by every worker through files in `directory`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "used").mkdir(exist_ok=True)
        self._file = self.directory / "models.json"
        self._lock_file = self.directory / "models.lock"
        self._cached: tuple[tuple[int, int], dict[str, Entry]] | None = None
        self._cache_lock = threading.Lock()

    def entries(self) -> dict[str, Entry]:
        """The registered models: one stat() a call; the file is read again only when it was replaced."""
        try:
            stat = self._file.stat()
        except FileNotFoundError:
            return {}
        key = (stat.st_ino, stat.st_mtime_ns)
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        with self._cache_lock:
            entries = self._read()
            self._cached = (key, entries)
        return entries

    def _read(self) -> dict[str, Entry]:
        try:
            data = json.loads(self._file.read_text())
        except FileNotFoundError:
            return {}
        return {name: Entry(**fields) for name, fields in data.items()}

    @contextlib.contextmanager
    def changing(self) -> Iterator[dict[str, Entry]]:
        """The registered models, under the registry's lock; what the block leaves in the dict is written back."""
        with open(self._lock_file, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entries = self._read()
                before = dict(entries)
                yield entries
                if entries != before:
                    self._write(entries)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, entries: dict[str, Entry]) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".models-", suffix=".json")
        with os.fdopen(fd, "w") as out:  # json.dumps: the C encoder (json.dump to a file is pure Python)
            out.write(json.dumps({name: vars(entry) for name, entry in entries.items()}))
        os.replace(temporary, self._file)  # readers see the old file or the new one, never half of one

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
        if not (self.evict_lru or self.archives_only):  # a 507 before the work of loading, where it is sure
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
            if not (self.evict_lru or self.archives_only) or not entries:
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
        """The model an invocation of `name` runs: this worker's copy, loaded here on first use."""
        entries = self.registry.entries()
        if entries is not self._seen:  # the registry changed: drop the copies of models unloaded meanwhile
            self._prune(entries)
        entry = entries.get(name)
        if entry is None:
            raise ModelNotLoaded(f"Model {name} is not loaded")
        self._note_use(name)
        held = self._models.get(name)
        if held is not None and held[0] == entry.loaded_at:
            return held[1]
        with self._lock:
            gate = self._loading.setdefault(name, threading.Lock())
        with gate:  # one load per model in this worker; the others wait for it
            held = self._models.get(name)
            if held is not None and held[0] == entry.loaded_at:
                return held[1]
            model = self.model_fn(entry.url)
            with self._lock:
                self._models[name] = (entry.loaded_at, model)
        log.info("model loaded: %s, in this worker on its first invocation here", name)
        return model

    def _prune(self, entries: dict[str, Entry]) -> None:
        with self._lock:
            for name, (loaded_at, _) in list(self._models.items()):
                entry = entries.get(name)
                if entry is None or entry.loaded_at != loaded_at:
                    del self._models[name]
            self._seen = entries

    def _note_use(self, name: str) -> None:
        if not self.evict_lru:
            return
        now = time.monotonic()
        if now - self._touched.get(name, 0.0) >= TOUCH_SECONDS:
            self._touched[name] = now
            self.registry.touch(name)
