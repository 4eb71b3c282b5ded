"""Our serving stack against AWS's DLC serving stack (sagemaker-inference on Multi Model Server), side by side.

    python -m bench.serving --vs-mms [--seconds 6] [--rounds 3] [--ours-env KEY=VALUE ...]

For each family the reference image is built (once; rebuilt when bench/dlc or the family image changes) from
bench/dlc/Dockerfile on top of our family image: the same OS, the same model code and model files, served by
MMS's Java frontend and Python backend workers through sagemaker-inference's handler service, whose
default_model_fn / input_fn / predict_fn / output_fn call the family's own functions. Both images serve the same
trained model.tar.gz with their default number of workers (one per core on both). `wrk` (a Lua script for the
POST body) loads each at 1, 8 and 32 connections, ours and the reference alternating, with a warm-up before
each measurement; each cell is the median of --rounds interleaved rounds. wrk reaches the containers at their
own addresses on docker's bridge where this host can (bench.wrk.direct_url: not through docker-proxy, which
the SageMaker front end never meets). The goal, checked at 8 connections for every row: ours >= 2x the
reference's req/s with a lower p99; the exit status is 1 when a row misses it (e.g. --ours-env
BYOC_WORKER_THREADS=1 --ours-env SAGEMAKER_MODEL_SERVER_WORKERS=1 shows it red).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import wrk as load
from bench.machine import markdown_table
from local.harness import Endpoint, Harness
from local.opt_ml import ChannelSpec
from tests.images import build_image, version

ROOT = Path(__file__).resolve().parents[1]
DLC_CONTEXT = ROOT / "bench" / "dlc"
CONNECTIONS = (1, 8, 32)
GOAL_CONNECTIONS = 8
GOAL_RATIO = 2.0


@dataclass(frozen=True)
class Row:
    family: str
    request: str
    body: bytes
    content_type: str
    accept: str = "application/json"


# --- the reference image -------------------------------------------------------------------------------------


def _inputs_digest(family_image: str) -> str:
    """What the reference image is made of: bench/dlc's files and the family image it builds on."""
    digest = hashlib.sha256()
    for path in sorted(p for p in DLC_CONTEXT.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        if path.name == "ca-bundle.crt":
            continue
        digest.update(str(path.relative_to(DLC_CONTEXT)).encode() + b"\0" + path.read_bytes())
    image_id = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", family_image], capture_output=True, text=True, check=True
    ).stdout.strip()
    digest.update(image_id.encode())
    return digest.hexdigest()[:16]


def _ca_bundle() -> Path | None:
    """pip inside the build must trust this network's TLS (the same search as build.sh's stage_ca_bundle)."""
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(name)
        if value and Path(value).is_file() and Path(value).stat().st_size:
            return Path(value)
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    return system if system.is_file() else None


def reference_image(family: str) -> str:
    """byoc-dlc-reference-<family>:<version>-cpu, built only when its inputs changed."""
    family_image = build_image(family)
    tag = f"byoc-dlc-reference-{family}:{version()}-cpu"
    inputs = _inputs_digest(family_image)
    current = subprocess.run(
        ["docker", "image", "inspect", "--format", '{{index .Config.Labels "byoc.reference.inputs"}}', tag],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if current == inputs:
        return tag
    print(f"building {tag} (sagemaker-inference + multi-model-server on {family_image})", file=sys.stderr)
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(DLC_CONTEXT, context, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        bundle = _ca_bundle()
        if bundle:
            shutil.copy(bundle, Path(context) / "ca-bundle.crt")
        build = subprocess.run(
            ["docker", "build", "-q", "--build-arg", f"FAMILY_IMAGE={family_image}",
             "--label", f"byoc.reference.inputs={inputs}", "-t", tag, context],
            capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )  # fmt: skip
    if build.returncode != 0:
        sys.exit(f"building the reference image {tag} failed:\n{build.stdout[-3000:]}{build.stderr[-3000:]}")
    return tag


def reference_evidence(endpoint: Endpoint) -> dict[str, str]:
    """That the reference really is MMS: its /ping body (MMS answers {"status": "Healthy"}) and its processes."""
    processes = subprocess.run(
        ["docker", "exec", endpoint.container.id, "ps", "-eo", "comm="], capture_output=True, text=True
    ).stdout.split()
    return {"ping_body": endpoint.ping().text.strip(), "processes": " ".join(sorted(set(processes)))}


# --- the models and requests ---------------------------------------------------------------------------------


def _train(harness: Harness, family: str, hyperparameters: dict, channels: dict) -> Path:
    trained = harness.train(build_image(family), hyperparameters, channels)
    if not trained.ok:
        sys.exit(f"training {family} for the benchmark failed:\n{trained.logs()[-3000:]}")
    return trained.model_archive


def linear_model(harness: Harness) -> tuple[Path, list[Row]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 20))
    data = harness.workdir / "linear" / "train.csv"
    data.parent.mkdir(parents=True)
    np.savetxt(data, np.c_[x @ rng.normal(size=20), x], delimiter=",")
    archive = _train(harness, "test-linear", {}, {"train": ChannelSpec(data, "text/csv")})
    body = (",".join(f"{v:.6f}" for v in x[0]) + "\n").encode()
    return archive, [Row("test-linear", "1 CSV row", body, "text/csv")]


def mxnet_mf_model(harness: Harness) -> tuple[Path, list[Row]]:
    from mxnet_mf import synthetic

    ratings = synthetic.generate(num_users=300, num_items=400, num_ratings=20000, rank=8, seed=3)
    root = harness.workdir / "mxnet-mf"
    ratings.write(root / "train" / "u.data", "u.data")
    # The image's default model (what a user deploys), fewer epochs: serving cost does not depend on them.
    archive = _train(harness, "mxnet-mf", {"epochs": 3}, {"train": ChannelSpec(root / "train")})
    rng = np.random.default_rng(1)
    users, items = rng.integers(1, 301, 100), rng.integers(1, 401, 100)

    def body(n: int) -> bytes:
        pairs = zip(users[:n], items[:n], strict=True)
        return json.dumps({"instances": [{"in0": [int(u)], "in1": [int(i)]} for u, i in pairs]}).encode()

    return archive, [
        Row("mxnet-mf", "Object2Vec JSON, 1 instance", body(1), "application/json"),
        Row("mxnet-mf", "Object2Vec JSON, 100 instances", body(100), "application/json"),
    ]


def gluon_cnn_model(harness: Harness) -> tuple[Path, list[Row]]:
    sample = ROOT / "containers" / "gluon-cnn" / "sample" / "mnist"
    channels = {}
    for channel, split in (("train", "train"), ("test", "t10k")):
        folder = harness.workdir / "gluon-cnn" / channel
        folder.mkdir(parents=True)
        for source in sample.glob(f"{split}-*"):
            shutil.copy(source, folder / source.name)
        channels[channel] = ChannelSpec(folder)
    archive = _train(harness, "gluon-cnn", {"epochs": 1, "log_interval": 0}, channels)
    image = np.random.default_rng(2).integers(0, 256, (28, 28)).astype(np.float32) / 255
    npy = tempfile.SpooledTemporaryFile()
    np.save(npy, image)
    npy.seek(0)
    return archive, [
        Row("gluon-cnn", "one 28x28 image, JSON", json.dumps({"instances": [image.round(4).tolist()]}).encode(),
            "application/json"),
        Row("gluon-cnn", "one 28x28 image, npy", npy.read(), "application/x-npy"),
    ]  # fmt: skip


MODELS: dict[str, Callable[[Harness], tuple[Path, list[Row]]]] = {
    "test-linear": linear_model,
    "mxnet-mf": mxnet_mf_model,
    "gluon-cnn": gluon_cnn_model,
}


# --- load ----------------------------------------------------------------------------------------------------


def wrk(url: str, row: Row, connections: int, seconds: int) -> dict[str, float]:
    return load.post(url, row.body, row.content_type, accept=row.accept, connections=connections, seconds=seconds)


def container_cpu_seconds(container_id: str) -> float | None:
    """CPU seconds a container has used (its cgroup's accounting, v1 or v2); None where neither is readable.
    CPU per request does not depend on what else runs on the machine, as req/s does."""
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage")
    if v1.is_file():
        return int(v1.read_text()) / 1e9
    v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat")
    if v2.is_file():
        usage = next(line for line in v2.read_text().splitlines() if line.startswith("usage_usec"))
        return int(usage.split()[1]) / 1e6
    return None


def _cpu_times() -> list[int] | None:
    """The machine's CPU time counters (/proc/stat's first line: user ... idle ... steal), where readable."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None


def measure(endpoint: Endpoint, url: str, row: Row, connections: int, seconds: int) -> dict[str, float]:
    """wrk's figures, plus the container's CPU milliseconds per request and the share of the machine's CPU
    time its hypervisor took away meanwhile (steal): on a VM whose host is busy, a vCPU is taken away for
    ~100 ms at a time once the guest uses all its cores, and every request in flight then waits that long.
    Measured here: rounds with 3-6% steal have a p99 of 60-90 ms for either stack, rounds with ~1% 10-40 ms."""
    before, times_before = container_cpu_seconds(endpoint.container.id), _cpu_times()
    result = wrk(url, row, connections, seconds)
    after, times_after = container_cpu_seconds(endpoint.container.id), _cpu_times()
    if before is not None and after is not None and result["requests"]:
        result["cpu_ms_per_request"] = (after - before) * 1000 / result["requests"]
    if times_before and times_after:
        spent = [b - a for a, b in zip(times_before, times_after, strict=True)]
        result["steal_percent"] = 100 * spent[7] / max(sum(spent), 1)
        result["idle_percent"] = 100 * spent[3] / max(sum(spent), 1)
    return result


def median_of(runs: list[dict]) -> dict:
    """One cell's figures over its rounds: the median of each rate and latency (a shared machine's hiccups
    land in one round, not in the cell), errors and requests summed, each round kept."""
    cell = {key: statistics.median(run[key] for run in runs) for key in ("rps", "p50_ms", "p99_ms")}
    cell.update({key: sum(run[key] for run in runs) for key in ("non_2xx", "errors", "requests")})
    for key in ("cpu_ms_per_request", "steal_percent", "idle_percent"):
        values = [run[key] for run in runs if key in run]
        if values:
            cell[key] = statistics.median(values)
    if len(runs) > 1:
        kept = ("rps", "p50_ms", "p99_ms", "steal_percent", "idle_percent")
        cell["rounds"] = [{key: run[key] for key in kept if key in run} for run in runs]
    return cell


def _same_answer(ours: Endpoint, reference: Endpoint, row: Row) -> None:
    """Both stacks must answer the request alike (same model, same code): else the race means nothing."""
    answers = [e.invoke(row.body, row.content_type, row.accept) for e in (ours, reference)]
    if any(a.status_code != 200 for a in answers):
        sys.exit(f"{row.family} / {row.request}: {[(a.status_code, a.text[:300]) for a in answers]}")
    mine, theirs = (json.loads(a.content) for a in answers)
    if mine != theirs:
        sys.exit(f"{row.family} / {row.request}: the two stacks answer differently:\n{mine}\n{theirs}")


def run(seconds: int, rounds: int, ours_env: dict[str, str], families: list[str]) -> tuple[dict, bool]:
    if not load.available():
        sys.exit("wrk is not installed (apt-get install wrk; .ci/setup installs it)")
    harness = Harness()
    results: dict = {"rows": [], "cold_start_seconds": {}, "reference": {}, "ours_env": ours_env}
    table, ok = [], True
    try:
        for family in families:
            archive, rows = MODELS[family](harness)
            reference_tag = reference_image(family)
            with (
                harness.serve(build_image(family), archive, environment=ours_env) as ours,
                harness.serve(reference_tag, archive, ping_timeout=180) as reference,
            ):
                results["cold_start_seconds"][family] = {"ours": ours.ready_seconds, "dlc": reference.ready_seconds}
                results["reference"][family] = {"image": reference_tag, **reference_evidence(reference)}
                urls = {"ours": load.direct_url(ours), "dlc": load.direct_url(reference)}
                results.setdefault("wrk_urls", {})[family] = urls
                for row in rows:
                    _same_answer(ours, reference, row)
                    for connections in CONNECTIONS:
                        runs: dict[str, list[dict]] = {"ours": [], "dlc": []}
                        for _ in range(rounds):
                            for name, endpoint in (("ours", ours), ("dlc", reference)):
                                wrk(urls[name], row, connections, 2)  # warm-up: every worker, every connection
                                runs[name].append(measure(endpoint, urls[name], row, connections, seconds))
                        best = {name: median_of(measured) for name, measured in runs.items()}
                        ratio = best["ours"]["rps"] / best["dlc"]["rps"]
                        met = None
                        if connections == GOAL_CONNECTIONS:
                            met = ratio >= GOAL_RATIO and best["ours"]["p99_ms"] < best["dlc"]["p99_ms"]
                            ok &= met
                        results["rows"].append({"family": family, "request": row.request, "connections": connections,
                                                "ours": best["ours"], "dlc": best["dlc"], "ratio": ratio,
                                                "goal_met": met})  # fmt: skip
                        table.append([
                            family, row.request, connections,
                            f"{best['ours']['rps']:.0f}", f"{best['dlc']['rps']:.0f}", f"**{ratio:.2f}x**",
                            f"{best['ours']['p50_ms']:.2f} / {best['dlc']['p50_ms']:.2f}",
                            f"{best['ours']['p99_ms']:.2f} / {best['dlc']['p99_ms']:.2f}",
                            f"{best['ours']['errors']} / {best['dlc']['errors']}",
                            f"{best['ours'].get('cpu_ms_per_request', float('nan')):.3f}"
                            f" / {best['dlc'].get('cpu_ms_per_request', float('nan')):.3f}",
                            f"{best['ours'].get('steal_percent', float('nan')):.1f}"
                            f" / {best['dlc'].get('steal_percent', float('nan')):.1f}",
                            "" if met is None else ("yes" if met else "**NO**"),
                        ])  # fmt: skip
                        print(" | ".join(map(str, table[-1])), file=sys.stderr)
    finally:
        harness.cleanup()
    print(f"\n## Ours against the DLC serving stack (sagemaker-inference + MMS), wrk, {seconds} s per cell\n")
    headers = ["family", "request", "conns", "ours req/s", "DLC req/s", "ours/DLC", "p50 ms ours / DLC",
               "p99 ms ours / DLC", "errors ours / DLC", "CPU ms/request ours / DLC", "steal % ours / DLC",
               f"goal met ({GOAL_RATIO:.0f}x, lower p99)"]  # fmt: skip
    print(markdown_table(headers, table))
    print("\n## Cold start (docker run ... serve -> first /ping 200), seconds\n")
    starts = results["cold_start_seconds"].items()
    cells = [[family, f"{s['ours']:.2f}", f"{s['dlc']:.2f}"] for family, s in starts]
    print(markdown_table(["family", "ours", "DLC stack"], cells))
    print(
        "\nThe reference: "
        + "; ".join(
            f"{f}: /ping {e['ping_body']!r}, processes {e['processes']}" for f, e in results["reference"].items()
        )
    )
    return results, ok
