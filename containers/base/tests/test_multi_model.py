"""Multi-model serving in-process: the contract's calls and answers, budgets (507, or LRU eviction when asked),
two workers sharing one registry, and loads/unloads racing invocations."""

import json
import threading
import time

import numpy as np
import pytest

from byoc_runtime import multi_model
from byoc_runtime.app import ServingApp
from byoc_runtime.handlers import resolve
from byoc_runtime.serving_settings import ServingSettings

CSV = "text/csv"


def tenant_model(root, name: str, bias: float):
    """A linear-family model whose answer to the row [0, 0, 0] is its bias: each tenant answers its own."""
    directory = root / name / "model"
    directory.mkdir(parents=True)
    np.savez(directory / "model.npz", weights=np.array([1.0, 2.0, 3.0]), bias=np.float64(bias))
    return directory


def worker(state_dir, *, budget=10**9, workers=1, evict=False):
    """One serving worker's app; several built on the same state_dir are several workers of one container."""
    settings = ServingSettings(family="linear_family.serving", multi_model=True, workers=workers)
    handlers = resolve(settings)
    server = multi_model.MultiModelServer(
        handlers.model_fn, multi_model.Registry(state_dir), budget=budget, workers=workers, evict_lru=evict
    )
    return ServingApp(settings, handlers, None, server).test_client()


def load(client, name, url, **headers):
    return client.post("/models", data=json.dumps({"model_name": name, "url": str(url)}), headers=headers)


def invoke(client, name):
    return client.post(f"/models/{name}/invoke", data=b"0,0,0\n", headers={"Content-Type": CSV})


def score(response):
    assert response.status_code == 200, response.data
    return response.get_json()["predictions"][0]["score"]


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def test_load_list_describe_invoke_unload_reload(tmp_path, state):
    client = worker(state)
    urls = {f"tenant-{i}": tenant_model(tmp_path, f"tenant-{i}", float(i)) for i in range(5)}
    assert client.get("/ping").status_code == 200  # ready with no model loaded
    for name, url in urls.items():
        answer = load(client, name, url, **{"X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"})
        assert answer.status_code == 200 and answer.get_json()["modelName"] == name
    assert [score(invoke(client, f"tenant-{i}")) for i in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    first = client.get("/models?limit=2").get_json()
    assert [m["modelName"] for m in first["models"]] == ["tenant-0", "tenant-1"] and first["nextPageToken"]
    names, token = [], None
    while True:
        page = client.get("/models", query_string={"limit": 2, **({"next_page_token": token} if token else {})})
        names += [m["modelName"] for m in page.get_json()["models"]]
        token = page.get_json().get("nextPageToken")
        if not token:
            break
    assert names == sorted(urls)
    assert client.get("/models/tenant-3").get_json() == {"modelName": "tenant-3", "modelUrl": str(urls["tenant-3"])}
    assert client.delete("/models/tenant-3").status_code == 200
    gone = invoke(client, "tenant-3")
    assert gone.status_code == 404 and gone.get_json()["error_type"] == "ModelNotFound"
    assert client.get("/models/tenant-3").status_code == 404
    assert load(client, "tenant-3", urls["tenant-3"]).status_code == 200
    assert score(invoke(client, "tenant-3")) == 3.0


def test_the_contracts_refusals_are_json(tmp_path, state):
    client = worker(state)
    url = tenant_model(tmp_path, "a", 1.0)
    assert load(client, "a", url).status_code == 200
    again = load(client, "a", url)
    assert again.status_code == 409 and again.get_json()["error_type"] == "ModelAlreadyLoaded"
    missing = load(client, "b", tmp_path / "nowhere")
    assert missing.status_code == 404 and "does not exist" in missing.get_json()["error"]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("not a model")
    junk = load(client, "c", tmp_path / "junk")
    assert junk.status_code == 400 and junk.get_json()["error_type"] == "InvalidModel"
    assert client.delete("/models/zzz").status_code == 404
    assert client.post("/models", data=b"{").status_code == 400
    assert client.post("/models", data=json.dumps({"url": str(url)})).status_code == 400
    assert client.get("/models/a/invoke").status_code == 405
    assert client.put("/models").status_code == 405
    not_here = client.post("/invocations", data=b"0,0,0\n", headers={"Content-Type": CSV})
    assert not_here.status_code == 404 and "/models/{name}/invoke" in not_here.get_json()["error"]
    named = client.post("/invocations", data=b"0,0,0\n", headers={"Content-Type": CSV,
                                                                   "X-Amzn-SageMaker-Target-Model": "a"})  # fmt: skip
    assert score(named) == 1.0  # a loaded model named by Target-Model on /invocations (SDK local mode's way)
    assert client.get("/models?limit=x").status_code == 400
    assert score(invoke(client, "a")) == 1.0  # and it keeps serving


def test_a_load_over_the_budget_is_507_and_nothing_loaded_is_dropped(tmp_path, state):
    urls = [tenant_model(tmp_path, f"t{i}", float(i)) for i in range(3)]
    size = multi_model.directory_bytes(urls[0])
    client = worker(state, budget=int(2.5 * size * 2), workers=2)  # room for two models in each of 2 workers
    assert load(client, "t0", urls[0]).status_code == 200
    assert load(client, "t1", urls[1]).status_code == 200
    full = load(client, "t2", urls[2])
    assert full.status_code == 507 and full.get_json()["error_type"] == "InsufficientMemory"
    assert "budget" in full.get_json()["error"]
    assert [score(invoke(client, n)) for n in ("t0", "t1")] == [0.0, 1.0]
    assert client.delete("/models/t0").status_code == 200  # what SageMaker does on a 507, then it retries
    assert load(client, "t2", urls[2]).status_code == 200 and score(invoke(client, "t2")) == 2.0


def test_lru_eviction_when_asked_unloads_the_least_recently_invoked(tmp_path, state, monkeypatch):
    monkeypatch.setattr(multi_model, "TOUCH_SECONDS", 0.0)
    urls = [tenant_model(tmp_path, f"t{i}", float(i)) for i in range(3)]
    size = multi_model.directory_bytes(urls[0])
    client = worker(state, budget=int(2.5 * size), evict=True)
    for name, url in (("t0", urls[0]), ("t1", urls[1])):
        assert load(client, name, url).status_code == 200
        time.sleep(0.02)
    invoke(client, "t0")  # t1 is now the least recently used
    assert load(client, "t2", urls[2]).status_code == 200
    assert sorted(m["modelName"] for m in client.get("/models").get_json()["models"]) == ["t0", "t2"]
    assert invoke(client, "t1").status_code == 404


def test_every_worker_sees_the_same_models(tmp_path, state):
    first, second = worker(state), worker(state)
    url = tenant_model(tmp_path, "shared", 7.0)
    assert load(first, "shared", url).status_code == 200
    assert score(invoke(second, "shared")) == 7.0  # loaded there on its first invocation
    assert second.get("/models").get_json()["models"] == [{"modelName": "shared", "modelUrl": str(url)}]
    assert second.delete("/models/shared").status_code == 200
    assert invoke(first, "shared").status_code == 404
    assert load(second, "shared", tenant_model(tmp_path, "shared-v2", 8.0)).status_code == 200
    assert score(invoke(first, "shared")) == 8.0  # the new registration, not the first worker's old copy


def test_loads_and_unloads_racing_invocations_never_fail_and_never_mix_models(tmp_path, state):
    workers = [worker(state), worker(state)]
    urls = {f"t{i}": tenant_model(tmp_path, f"t{i}", float(i)) for i in range(4)}
    load(workers[0], "t0", urls["t0"])
    failures, answers = [], []
    deadline = time.monotonic() + 3

    def invoker(client):
        while time.monotonic() < deadline:
            for name in urls:
                response = invoke(client, name)
                if response.status_code == 200:
                    answers.append(score(response) == float(name[1:]))
                elif response.status_code != 404:
                    failures.append((response.status_code, response.data))

    def churner(client, names):
        while time.monotonic() < deadline:
            for name in names:
                status = load(client, name, urls[name]).status_code
                if status not in (200, 409):
                    failures.append(("load", status))
                status = client.delete(f"/models/{name}").status_code
                if status not in (200, 404):
                    failures.append(("unload", status))

    threads = [threading.Thread(target=invoker, args=(workers[i % 2],)) for i in range(6)]
    threads += [threading.Thread(target=churner, args=(workers[0], ["t1", "t2"])),
                threading.Thread(target=churner, args=(workers[1], ["t2", "t3"]))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(answers) > 100 and all(answers)


def test_a_single_model_endpoint_serves_archives_named_by_target_model(tmp_path, monkeypatch):
    """SDK local mode's MultiDataModel: the models' prefix at /opt/ml/model, Target-Model on /invocations."""
    import tarfile

    from byoc_runtime.app import create_app

    prefix = tmp_path / "prefix"
    prefix.mkdir()
    for tenant in (1, 2):
        source = tenant_model(tmp_path, f"src-{tenant}", float(tenant))
        with tarfile.open(prefix / f"tenant-{tenant}.tar.gz", "w:gz") as tar:
            tar.add(source / "model.npz", arcname="model.npz")
    tenant_model(tmp_path, "plain", 9.0)
    (prefix / "model.npz").write_bytes((tmp_path / "plain" / "model" / "model.npz").read_bytes())
    monkeypatch.setenv(multi_model.STATE_DIR_ENV, str(tmp_path / "state"))
    settings = ServingSettings(family="linear_family.serving", model_dir=prefix, workers=1)
    client = create_app(settings, background_load=False).test_client()

    def ask(target=None):
        headers = {"Content-Type": CSV, **({"X-Amzn-SageMaker-Target-Model": target} if target else {})}
        return client.post("/invocations", data=b"0,0,0\n", headers=headers)

    assert score(ask("tenant-2.tar.gz")) == 2.0 and score(ask("tenant-1.tar.gz")) == 1.0
    assert score(ask()) == 9.0  # without the header: the endpoint's own model
    for bad in ("tenant-3.tar.gz", "../prefix/tenant-1.tar.gz/..", "/etc/passwd"):
        assert ask(bad).status_code == 404, bad


def _entry(name: str, size: int = 10) -> multi_model.Entry:
    return multi_model.Entry(name=name, url=f"/models/{name}", size_bytes=size, loaded_at=time.time())


def test_the_registry_log_is_read_incrementally_and_compacted(state):
    """Two Registry objects on one directory are two workers: each sees the other's changes, across the log's
    compaction (a new file renamed over the old one), and a line still being written is not read."""
    first, second = multi_model.Registry(state), multi_model.Registry(state)
    assert first.entries() == {} and second.entries() == {}
    for round_ in range(3 * multi_model.Registry.COMPACT_LINES):  # several compactions
        with first.changing() as entries:
            entries[f"m{round_ % 7}"] = _entry(f"m{round_ % 7}", round_)
            entries.pop(f"m{(round_ + 3) % 7}", None)
        if round_ % 5 == 0:
            assert second.entries() == first.entries()
    assert second.entries() == first.entries()
    assert len(first.entries()) == 4
    log_lines = (state / "models.log").read_bytes().count(b"\n")
    assert log_lines < multi_model.Registry.COMPACT_LINES  # compacted, not grown without end
    seen = second.entries()
    assert second.entries() is seen  # nothing changed: the same dict, no re-read
    victim = next(iter(seen))
    with open(state / "models.log", "ab") as log_file:  # a writer half-way through a line
        log_file.write(b'{"unload": "%s"' % victim.encode())
    assert second.entries() is seen
    with open(state / "models.log", "ab") as log_file:
        log_file.write(b"}\n")
    assert victim not in second.entries() and victim in seen  # a caller's old dict is never changed under it


def _register_many(state_dir, prefix: str, count: int) -> None:
    registry = multi_model.Registry(state_dir)
    for number in range(count):
        with registry.changing() as entries:
            entries[f"{prefix}-{number}"] = _entry(f"{prefix}-{number}")
            if number % 2:
                del entries[f"{prefix}-{number - 1}"]


def test_the_registry_stays_whole_under_writers_in_several_processes(state):
    import multiprocessing

    multi_model.Registry(state)
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_register_many, args=(state, f"p{n}", 301)) for n in range(3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    names = set(multi_model.Registry(state).entries())
    assert names == {f"p{n}-{number}" for n in range(3) for number in range(1, 301, 2)} | {
        f"p{n}-300" for n in range(3)
    }


def test_a_following_worker_loads_what_another_worker_registered_before_it_is_invoked(tmp_path, state):
    calls: list[str] = []
    handlers = resolve(ServingSettings(family="linear_family.serving", multi_model=True, workers=2))

    def model_fn(path: str):
        calls.append(path)
        return handlers.model_fn(path)

    loader = multi_model.MultiModelServer(model_fn, multi_model.Registry(state), budget=10**9, workers=2)
    follower = multi_model.MultiModelServer(model_fn, multi_model.Registry(state), budget=10**9, workers=2)
    follower.follow(interval=0.01)
    url = tenant_model(tmp_path, "tenant-1", 1.0)
    loader.load({"model_name": "tenant-1", "url": str(url)})
    deadline = time.monotonic() + 5
    while "tenant-1" not in follower._models and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "tenant-1" in follower._models and len(calls) == 2  # loaded once in each worker
    follower.model("tenant-1")
    assert len(calls) == 2  # the invocation found it ready
    loader.unload("tenant-1")
    while "tenant-1" in follower._models and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "tenant-1" not in follower._models  # and dropped once unloaded
    with pytest.raises(multi_model.ModelNotLoaded):
        follower.model("tenant-1")
