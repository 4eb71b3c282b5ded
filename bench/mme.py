"""A multi-model endpoint under a tenant's load: 1,000 per-tenant mxnet-mf models, a budget for 10 % of them.

    python -m bench.mme [--tenants 1000] [--resident 0.1] [--clients 8] [--seconds 60] [--zipf 1.1] [--full]
                        [--env KEY=VALUE ...]

Each tenant's model is derived from one set of random factors (users x items x 16) with its own global bias,
so that every answer tells which model gave it; the bench knows each tenant's right answer. The mxnet-mf
serve-only image (--full: the full image) serves them as SageMaker runs a multi-model endpoint
(SAGEMAKER_MULTI_MODEL=true, the models under /opt/ml/models) with a memory budget that holds --resident of
them. The bench plays SageMaker's part: --clients threads invoke tenants drawn with Zipf(--zipf) popularity
through POST /models/{name}/invoke; a 404 (not loaded) makes the client load the model (POST /models), and a
507 (no room) makes it unload the least recently used loaded model and retry, then invoke again. First, in the
same run, the same clients invoke one of those models on a single-model endpoint of the same image
(/invocations): the reference p99. Table: req/s, p50/p99 of hits (answered at once) and of misses (404, load,
invoke), loads, unloads, 507s, errors. Goals: no error (a 5xx, a wrong answer, a refused load other than 409
or 507) and the hits' p99 within 2x of single-model serving's; exit 1 otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from bench.machine import markdown_table, save
from local.harness import Harness
from mxnet_mf.data import IdIndex
from mxnet_mf.recommender import Recommender
from tests.images import build_image

USERS, ITEMS, FACTORS = 300, 400, 16
USER, ITEM = 7, 11  # every request rates this pair: each tenant's answer differs by its global bias
GOAL_P99_RATIO = 2.0


def write_tenants(root: Path, count: int) -> dict[str, float]:
    """/opt/ml/models/<tenant>/model for every tenant, as SageMaker extracts them; returns the right answers."""
    rng = np.random.default_rng(0)
    params = {
        "user_embedding": rng.normal(0, 0.1, (USERS, FACTORS)).astype(np.float32),
        "item_embedding": rng.normal(0, 0.1, (ITEMS, FACTORS)).astype(np.float32),
        "user_bias": rng.normal(0, 0.1, USERS).astype(np.float32),
        "item_bias": rng.normal(0, 0.1, ITEMS).astype(np.float32),
    }
    answers = {}
    for tenant in range(count):
        name = f"tenant-{tenant:04d}"
        model = Recommender(
            kind="mf", users=IdIndex(np.arange(1, USERS + 1)), items=IdIndex(np.arange(1, ITEMS + 1)),
            params={**params, "global_bias": np.array([2.0 + tenant / count], dtype=np.float32)},
            min_rating=1.0, max_rating=5.0, mean_rating=3.0,
        )  # fmt: skip
        model.save(root / name / "model")
        answers[name] = float(model.predict(np.array([USER - 1]), np.array([ITEM - 1]))[0])
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the serving user reads them
    return answers


class Client:
    """One keep-alive connection; (status, body) of each call."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=60)

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        self.connection.request(method, path, body=body, headers=headers or {})
        response = self.connection.getresponse()
        return response.status, response.read()


BODY = json.dumps({"instances": [{"in0": [USER], "in1": [ITEM]}]}).encode()
JSON_HEADERS = {"Content-Type": "application/json"}


def _score(body: bytes) -> float:
    return json.loads(body)["predictions"][0]["scores"][0]


class SageMakerPart:
    """What SageMaker does for a multi-model endpoint: load on a miss, unload the least used on a 507."""

    def __init__(self, answers: dict[str, float]):
        self.answers = answers
        self.lru: OrderedDict[str, None] = OrderedDict()  # loaded models, least recently used first
        self.lock = threading.Lock()
        self.counts = {"hits": 0, "misses": 0, "loads": 0, "unloads": 0, "507": 0, "409": 0, "errors": 0}
        self.hit_ms: list[float] = []
        self.miss_ms: list[float] = []
        self.errors: list[str] = []

    def used(self, name: str) -> None:
        with self.lock:
            self.lru[name] = None
            self.lru.move_to_end(name)

    def error(self, message: str) -> None:
        with self.lock:
            self.counts["errors"] += 1
            if len(self.errors) < 10:
                self.errors.append(message)

    def invoke(self, client: Client, name: str) -> None:
        started = time.perf_counter()
        path = f"/models/{name}/invoke"
        headers = {**JSON_HEADERS, "X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"}
        status, body = client.call("POST", path, BODY, headers)
        missed = status == 404
        for _ in range(5):  # loaded, then unloaded by another client making room before this invoke: again
            if status != 404:
                break
            self.load(client, name)
            status, body = client.call("POST", path, BODY, headers)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            self.error(f"invoke {name}: {status} {body[:200]!r}")
            return
        if abs(_score(body) - self.answers[name]) > 1e-4:
            self.error(f"invoke {name}: answered {_score(body)}, its model gives {self.answers[name]}")
            return
        self.used(name)
        with self.lock:
            self.counts["misses" if missed else "hits"] += 1
            (self.miss_ms if missed else self.hit_ms).append(elapsed)

    def load(self, client: Client, name: str) -> None:
        request = json.dumps({"model_name": name, "url": f"/opt/ml/models/{name}/model"}).encode()
        for _ in range(50):
            status, body = client.call("POST", "/models", request, JSON_HEADERS)
            if status == 200:
                with self.lock:
                    self.counts["loads"] += 1
                self.used(name)
                return
            if status == 409:  # another client loaded it meanwhile
                with self.lock:
                    self.counts["409"] += 1
                return
            if status != 507:
                self.error(f"load {name}: {status} {body[:200]!r}")
                return
            with self.lock:
                self.counts["507"] += 1
                victim = next(iter(self.lru), None)
                if victim is not None:
                    del self.lru[victim]
            if victim is not None:
                status, body = client.call("DELETE", f"/models/{victim}")
                if status == 200:
                    with self.lock:
                        self.counts["unloads"] += 1
                elif status != 404:  # 404: another client unloaded it first
                    self.error(f"unload {victim}: {status} {body[:200]!r}")
        self.error(f"load {name}: still 507 after 50 unloads")


def closed_loop(clients: int, seconds: float, work) -> float:
    """`clients` threads calling work(client_number) until the time is up; returns the elapsed seconds."""
    deadline = time.monotonic() + seconds
    started = time.perf_counter()

    def run(number: int) -> None:
        while time.monotonic() < deadline:
            work(number)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--resident", type=float, default=0.1, help="share of the models the budget holds")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--zipf", type=float, default=1.1, help="popularity exponent (tenant rank ** -zipf)")
    parser.add_argument("--full", action="store_true", help="the full image instead of the serve-only one")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment of both endpoints (e.g. BYOC_MME_FOLLOW=false)")  # fmt: skip
    args = parser.parse_args()

    image = build_image("mxnet-mf", serve=not args.full)
    harness = Harness()
    models = harness.workdir / "models"
    answers = write_tenants(models, args.tenants)
    names = sorted(answers)
    size = sum(p.stat().st_size for p in (models / names[0] / "model").iterdir())
    workers = 2
    budget_mb = size * workers * int(args.tenants * args.resident) / 2**20 * 1.001
    rank = np.arange(1, args.tenants + 1, dtype=float) ** -args.zipf
    popularity = rank / rank.sum()
    mount = {"volumes": {str(models): {"bind": "/opt/ml/models", "mode": "ro"}}}
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), **dict(item.split("=", 1) for item in args.env)}

    # The reference: the same image and clients on a single-model endpoint.
    single_ms: list[float] = []
    lock = threading.Lock()
    with harness.serve(image, models / names[0] / "model", environment=env) as endpoint:
        connections = [Client(endpoint.url) for _ in range(args.clients)]

        def single(number: int) -> None:
            started = time.perf_counter()
            status, body = connections[number].call("POST", "/invocations", BODY, JSON_HEADERS)
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200 or abs(_score(body) - answers[names[0]]) > 1e-4:
                raise RuntimeError(f"the single-model endpoint answered {status} {body[:200]!r}")
            with lock:
                single_ms.append(elapsed)

        single_seconds = closed_loop(args.clients, args.seconds / 3, single)

    part = SageMakerPart(answers)
    with harness.serve(image, None, environment={**env, "SAGEMAKER_MULTI_MODEL": "true",
                                                  "BYOC_MME_MEMORY_MB": f"{budget_mb:.6f}"},
                       container_options=mount) as endpoint:  # fmt: skip
        connections = [Client(endpoint.url) for _ in range(args.clients)]
        generators = [np.random.default_rng(100 + n) for n in range(args.clients)]
        mme_seconds = closed_loop(
            args.clients, args.seconds,
            lambda n: part.invoke(connections[n], names[int(generators[n].choice(args.tenants, p=popularity))]),
        )  # fmt: skip
        loaded = json.loads(Client(endpoint.url).call("GET", "/models?limit=100000")[1])["models"]
    harness.cleanup()

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    single_p99, hit_p99 = pct(single_ms, 99), pct(part.hit_ms, 99)
    requests_done = part.counts["hits"] + part.counts["misses"]
    ok = part.counts["errors"] == 0 and hit_p99 <= GOAL_P99_RATIO * single_p99
    rows = [
        ["single-model endpoint (reference)", f"{len(single_ms) / single_seconds:.0f}", len(single_ms),
         f"{pct(single_ms, 50):.2f}", f"{single_p99:.2f}", "", "", "", "0"],
        ["multi-model: hits", f"{requests_done / mme_seconds:.0f} (all)", part.counts["hits"],
         f"{pct(part.hit_ms, 50):.2f}", f"{hit_p99:.2f}", part.counts["loads"], part.counts["unloads"],
         part.counts["507"], part.counts["errors"]],
        ["multi-model: misses (404, load, invoke)", "", part.counts["misses"], f"{pct(part.miss_ms, 50):.2f}",
         f"{pct(part.miss_ms, 99):.2f}", "", "", "", ""],
    ]  # fmt: skip
    print(f"\n## {args.tenants} mxnet-mf tenants, a budget for {args.resident:.0%} of them, {args.clients} clients,"
          f" Zipf {args.zipf}, {image}\n")  # fmt: skip
    print(markdown_table(["endpoint", "req/s", "answers", "p50 ms", "p99 ms", "loads", "unloads", "507s",
                          "errors"], rows))  # fmt: skip
    print(f"\nhits' p99 / single-model p99: {hit_p99 / single_p99:.2f} (goal <= {GOAL_P99_RATIO}); loaded at the "
          f"end: {len(loaded)} models; errors: {part.errors[:3]}")  # fmt: skip
    results = {
        "image": image, "tenants": args.tenants, "resident_share": args.resident, "budget_mb": budget_mb,
        "model_bytes": size, "env": env, "clients": args.clients, "seconds": args.seconds, "zipf": args.zipf,
        "single_model": {"answers": len(single_ms), "rps": len(single_ms) / single_seconds,
                         "p50_ms": pct(single_ms, 50), "p99_ms": single_p99},
        "multi_model": {**part.counts, "rps": requests_done / mme_seconds, "hit_p50_ms": pct(part.hit_ms, 50),
                        "hit_p99_ms": hit_p99, "miss_p50_ms": pct(part.miss_ms, 50),
                        "miss_p99_ms": pct(part.miss_ms, 99), "loaded_at_end": len(loaded),
                        "error_samples": part.errors},
        "hit_p99_over_single_p99": hit_p99 / single_p99, "goal_met": ok,
    }  # fmt: skip
    print(f"wrote {save('mme', results, 'python -m bench.mme ' + ' '.join(sys.argv[1:]))}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
