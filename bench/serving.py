"""Serving overhead of the contract runtime, measured on the linear test family in its real image.

    python -m bench.serving [--quick]
    python -m bench.serving --vs-mms [--seconds 6] [--rounds 3] [--families ...] [--ours-env KEY=VALUE ...]
    python -m bench.serving --serve-only [bench.serve_only's options]

In one run, side by side: the in-process handler chain (decode + predict + encode, no HTTP) against
the same request through the running container over HTTP (sequential keep-alive p50/p99, and req/s with
8 concurrent connections from wrk), for 1-row and 1000-row requests and for both gunicorn worker
classes; then image sizes and cold start (docker run ... serve -> first /ping 200).
--vs-mms: ours against AWS's DLC serving stack, side by side (bench/serving_vs_mms.py says how).
--serve-only: cold start (and size, req/s) of every family's full and serve-only image (bench/serve_only.py).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import serving_vs_mms as vs_mms
from bench import wrk as load
from bench.machine import markdown_table, save
from local.harness import Harness
from local.opt_ml import ChannelSpec
from tests.images import build_image

FEATURES = 20


def _body(rows: int) -> bytes:
    x = np.random.default_rng(rows).normal(size=(rows, FEATURES))
    return ("\n".join(",".join(f"{v:.6f}" for v in row) for row in x) + "\n").encode()


def in_process_latency(model_dir: Path, body: bytes, repeats: int) -> list[float]:
    from byoc_runtime.handlers import resolve
    from byoc_runtime.invocation import invoke
    from byoc_runtime.serving_settings import ServingSettings

    handlers = resolve(ServingSettings(model_dir=model_dir, family="linear_family.serving"))
    model = handlers.model_fn(str(model_dir))
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        status, _, _ = invoke(handlers, model, body, "text/csv", "application/json")
        timings.append(time.perf_counter() - started)
        assert status == 200
    return timings


def http_latency(url: str, body: bytes, repeats: int) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    headers = {"Content-Type": "text/csv", "Accept": "application/json"}
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        connection.request("POST", "/invocations", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        timings.append(time.perf_counter() - started)
        assert response.status == 200
    connection.close()
    return timings


def wrk_throughput(url: str, body: bytes, seconds: int, connections: int = 8) -> dict[str, float]:
    if not load.available():
        print("wrk not found (apt-get install wrk): the 8-connection columns stay empty", file=sys.stderr)
        return {}
    return load.post(url, body, "text/csv", connections=connections, seconds=seconds)


def cold_start(harness: Harness, image: str, model: Path, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        endpoint = harness.start_endpoint(image, model)
        seconds.append(endpoint.ready_seconds)
        harness.stop_endpoint(endpoint)
    return seconds


def image_sizes() -> list[tuple[str, float]]:
    out = subprocess.run(
        ["docker", "images", "--filter", "reference=byoc-*", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    sizes = []
    for line in sorted(filter(None, out)):
        name, _ = line.split()
        if not name.endswith(":latest-cpu") and not name.endswith(":latest-gpu"):
            continue
        size = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", name], capture_output=True, text=True
        ).stdout.strip()
        sizes.append((name, int(size) / 1e6))
    return sizes


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier)")
    parser.add_argument("--vs-mms", action="store_true", help="against the DLC stack (sagemaker-inference + MMS)")
    parser.add_argument("--seconds", type=int, default=6, help="--vs-mms: wrk seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="--vs-mms: interleaved rounds a cell (the median counts)")
    parser.add_argument("--families", nargs="+", help=f"--vs-mms: of {', '.join(vs_mms.MODELS)} (default: all)")
    parser.add_argument(
        "--ours-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="--vs-mms: environment of our containers (e.g. a deliberately slow setting)",
    )
    parser.add_argument("--serve-only", action="store_true",
                        help="every family's full and serve-only image: size, cold start, req/s (bench/serve_only.py, "
                             "whose options may follow)")  # fmt: skip
    args, rest = parser.parse_known_args()
    if args.serve_only:
        from bench import serve_only

        sys.argv = ["bench.serve_only", *(["--families", *args.families] if args.families else []), *rest]
        return serve_only.main()
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.vs_mms:
        ours_env = dict(item.split("=", 1) for item in args.ours_env)
        families = args.families or list(vs_mms.MODELS)
        if unknown := set(families) - set(vs_mms.MODELS):
            parser.error(f"--vs-mms: no model for {sorted(unknown)}; known: {', '.join(vs_mms.MODELS)}")
        results, ok = vs_mms.run(args.seconds, args.rounds, ours_env, families)
        command = " ".join(["python -m bench.serving", *sys.argv[1:]])
        print(f"\nwrote {save('serving_vs_mms', results, command)}")
        return 0 if ok else 1
    repeats, wrk_seconds = (300, 3) if args.quick else (2000, 10)
    image = build_image("test-linear")
    harness = Harness()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, FEATURES))
    data = harness.workdir / "train.csv"
    np.savetxt(data, np.c_[x @ rng.normal(size=FEATURES), x], delimiter=",")
    trained = harness.train(image, {}, {"train": ChannelSpec(data, "text/csv")})
    assert trained.ok, trained.logs()

    rows, results = [], {"requests": {}}
    for n_rows in (1, 1000):
        body = _body(n_rows)
        local = in_process_latency(trained.model_dir, body, repeats)
        results["requests"][f"{n_rows}_rows_in_process"] = {"p50_ms": ms(local, 50), "p99_ms": ms(local, 99)}
        rows.append(
            [f"{n_rows} row(s)", "in-process (no HTTP)", f"{ms(local, 50):.3f}", f"{ms(local, 99):.3f}", "", "", "", ""]
        )
        for worker_class in ("gthread", "sync"):
            env = {"BYOC_WORKER_CLASS": worker_class}
            with harness.serve(image, trained.model_archive, environment=env) as endpoint:
                http_latency(endpoint.url, body, 50)  # warm up every worker
                seq = http_latency(endpoint.url, body, repeats)
                load = wrk_throughput(endpoint.url, body, wrk_seconds)
            overhead = ms(seq, 50) - ms(local, 50)
            results["requests"][f"{n_rows}_rows_{worker_class}"] = {
                "sequential_p50_ms": ms(seq, 50),
                "sequential_p99_ms": ms(seq, 99),
                "http_overhead_p50_ms": overhead,
                **{f"wrk_{k}": v for k, v in load.items()},
            }
            rows.append(
                [
                    f"{n_rows} row(s)",
                    f"HTTP, gunicorn {worker_class}" + (" (default)" if worker_class == "gthread" else ""),
                    f"{ms(seq, 50):.3f}",
                    f"{ms(seq, 99):.3f}",
                    f"{overhead:+.3f}",
                    f"{load.get('rps', float('nan')):.0f}",
                    f"{load.get('p50_ms', float('nan')):.2f}",
                    f"{load.get('p99_ms', float('nan')):.2f}",
                ]
            )
    print("\n## Requests (linear test family, text/csv in, JSON out)\n")
    print(
        markdown_table(
            [
                "request",
                "path",
                "seq p50 ms",
                "seq p99 ms",
                "HTTP overhead p50 ms",
                "req/s (8 conns)",
                "p50 ms (8 conns)",
                "p99 ms (8 conns)",
            ],
            rows,
        )
    )

    starts = cold_start(harness, image, trained.model_archive, 3 if args.quick else 5)
    results["cold_start_seconds"] = starts
    print(f"\n## Cold start (docker run ... serve -> first /ping 200), {len(starts)} runs\n")
    print(
        markdown_table(
            ["image", "median s", "min s", "max s"],
            [[image, f"{statistics.median(starts):.2f}", f"{min(starts):.2f}", f"{max(starts):.2f}"]],
        )
    )
    sizes = image_sizes()
    results["image_sizes_mb"] = dict(sizes)
    print("\n## Image sizes\n")
    print(markdown_table(["image", "MB"], [[name, f"{size:.0f}"] for name, size in sizes]))
    path = save("serving", results, "python -m bench.serving" + (" --quick" if args.quick else ""))
    print(f"\nwrote {path}")
    harness.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
