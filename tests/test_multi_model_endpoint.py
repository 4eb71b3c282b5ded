"""A multi-model endpoint in a real image (the linear test family; the runtime serves every family alike):
the contract's calls with their JSON answers, the Target-Model header in the log, 409/404/507, and 8 threads
loading, unloading and invoking the same models over 2 workers for 30 s with no 5xx and no answer of the wrong
model."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import numpy as np
import pytest
import requests

from tests.images import build_image

pytestmark = pytest.mark.docker
TENANTS = 12


@pytest.fixture(scope="module")
def image():
    return build_image("test-linear")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """/opt/ml/models as SageMaker lays it out: one extracted model per tenant, each answering its own bias."""
    root = tmp_path_factory.mktemp("models")
    for tenant in range(TENANTS):
        directory = root / f"tenant-{tenant}" / "model"
        directory.mkdir(parents=True)
        np.savez(directory / "model.npz", weights=np.array([1.0, 2.0, 3.0]), bias=np.float64(tenant))
        (directory / "model.npz").chmod(0o644)
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    return root


def serve(harness, image, models, **environment):
    options = {"volumes": {str(models): {"bind": "/opt/ml/models", "mode": "ro"}}}
    env = {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "2", **environment}
    return harness.serve(image, None, environment=env, container_options=options)


def load(session, url, tenant, name=None):
    body = {"model_name": name or f"tenant-{tenant}", "url": f"/opt/ml/models/tenant-{tenant}/model"}
    return session.post(f"{url}/models", data=json.dumps(body),
                        headers={"X-Amzn-SageMaker-Target-Model": f"tenant-{tenant}.tar.gz"}, timeout=30)  # fmt: skip


def invoke(session, url, name):
    headers = {"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"}
    return session.post(f"{url}/models/{name}/invoke", data=b"0,0,0\n", headers=headers, timeout=30)


def test_the_image_says_it_serves_multi_model_endpoints(image):
    labels = json.loads(subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image],
                                       capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert labels["com.amazonaws.sagemaker.capabilities.multi-models"] == "true"


def test_load_list_invoke_unload_reload_and_refusals(harness, image, models, dump_logs_on_failure):
    with serve(harness, image, models, BYOC_MME_MEMORY_MB="0.005") as endpoint:  # room for a few tiny models
        dump_logs_on_failure(endpoint)
        session, url = requests.Session(), endpoint.url
        assert endpoint.ping().status_code == 200
        loaded = [t for t in range(TENANTS) if load(session, url, t).status_code == 200]
        assert 2 <= len(loaded) < TENANTS
        full = load(session, url, loaded[-1] + 1)
        assert full.status_code == 507 and full.json()["error_type"] == "InsufficientMemory", full.text
        for tenant in loaded:  # each answers its own model, through either worker
            for _ in range(4):
                answer = invoke(session, url, f"tenant-{tenant}")
                assert answer.json()["predictions"][0]["score"] == tenant, answer.text
        page = session.get(f"{url}/models", params={"limit": 1}).json()
        assert len(page["models"]) == 1 and "nextPageToken" in page
        rest = session.get(f"{url}/models", params={"next_page_token": page["nextPageToken"]}).json()
        assert [m["modelName"] for m in page["models"] + rest["models"]] == sorted(f"tenant-{t}" for t in loaded)
        assert session.get(f"{url}/models/tenant-0").json() == {
            "modelName": "tenant-0", "modelUrl": "/opt/ml/models/tenant-0/model"}  # fmt: skip
        assert load(session, url, 0).status_code == 409
        assert load(session, url, 99).status_code == 404
        assert session.delete(f"{url}/models/tenant-0").status_code == 200
        gone = invoke(session, url, "tenant-0")
        assert gone.status_code == 404 and gone.json()["error_type"] == "ModelNotFound"
        assert session.delete(f"{url}/models/tenant-0").status_code == 404
        assert load(session, url, loaded[-1] + 1).status_code == 200  # room again
        assert load(session, url, 0).status_code == 507
        logs = endpoint.logs()
        assert "(X-Amzn-SageMaker-Target-Model: tenant-1.tar.gz)" in logs and "target model tenant-1.tar.gz" in logs


def test_eight_threads_loading_unloading_invoking_for_30_s(harness, image, models, dump_logs_on_failure):
    with serve(harness, image, models) as endpoint:
        dump_logs_on_failure(endpoint)
        url, deadline = endpoint.url, time.monotonic() + 30
        counts = {"ok": 0, "404": 0, "loads": 0, "unloads": 0}
        failures, lock = [], threading.Lock()

        def note(key):
            with lock:
                counts[key] += 1

        def worker(seed):
            session, rng = requests.Session(), np.random.default_rng(seed)
            while time.monotonic() < deadline:
                tenant = int(rng.integers(0, 4))  # few models: the same ones are loaded, unloaded and invoked
                action = rng.random()
                if action < 0.15:
                    status = load(session, url, tenant).status_code
                    note("loads") if status == 200 else None
                    if status not in (200, 409):
                        failures.append(("load", status))
                elif action < 0.25:
                    status = session.delete(f"{url}/models/tenant-{tenant}", timeout=30).status_code
                    note("unloads") if status == 200 else None
                    if status not in (200, 404):
                        failures.append(("unload", status))
                else:
                    answer = invoke(session, url, f"tenant-{tenant}")
                    if answer.status_code == 200:
                        if answer.json()["predictions"][0]["score"] != tenant:
                            failures.append(("wrong model", tenant, answer.text))
                        note("ok")
                    elif answer.status_code == 404:
                        note("404")
                    else:
                        failures.append(("invoke", answer.status_code, answer.text[:200]))

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == [], failures[:5]
        assert counts["ok"] > 500 and counts["loads"] > 20 and counts["unloads"] > 20, counts
