"""mxnet-mf: training samples/s of our loop against the course's loop, and serving latency.

    python -m bench.mxnet_mf [--epochs 2] [--repeats 300] [--rounds 2]
    python -m bench.mxnet_mf --vs-surprise [...]    (our MF trainer against Surprise: bench/mxnet_mf_vs_surprise.py)

Training runs inside the byoc-mxnet-mf image (bench/mxnet_mf_loops.py) on generated ratings of
ML-100K's shape (943 users x 1682 items, 100k ratings), mf and deep, batch 256 and 1024, our loop and the
course's loop alternating. Serving: a model trained by the image, served by the image, rating requests
of 1 and 1000 rows and a top-10 recommendation, sequential keep-alive HTTP, p50/p99.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import markdown_table, save
from byoc_runtime import cpu
from local.harness import Harness
from local.opt_ml import ChannelSpec
from mxnet_mf import synthetic
from tests.images import build_image

ROOT = Path(__file__).resolve().parents[1]


def loop_environments() -> dict[str, dict[str, str]]:
    """The three runs: the course's loop as MXNet starts it by default; the same loop with the OpenMP threads
    our trainer picks (like for like); our loop with every CPU setting our trainer picks on one CPU host."""
    ours = cpu.mxnet_environment(num_gpus=0, hosts=1, environ={})  # as a fresh container sees it
    threads = {k: v for k, v in ours.items() if k == "OMP_NUM_THREADS"}
    return {"course": {}, "course_threads": threads, "ours": ours}


def training_throughput(image: str, data_dir: Path, epochs: int, rounds: int = 2) -> dict:
    """Best samples/s of each run over `rounds` alternating rounds, each run in a container of its own."""
    environments = loop_environments()
    best: dict[str, dict[str, float]] = {run: {} for run in environments}
    for _ in range(rounds):
        for run, environment in environments.items():
            loop = "ours" if run == "ours" else "course"
            settings = [arg for name, value in environment.items() for arg in ("-e", f"{name}={value}")]
            command = [
                "docker", "run", "--rm", "-v", f"{ROOT / 'bench'}:/opt/bench/bench:ro", "-v", f"{data_dir}:/data:ro",
                "-e", "PYTHONPATH=/opt/bench:/opt/family/src:/opt/family/lib:/opt/byoc/src", *settings,
                "--entrypoint", "python", image, "-m", "bench.mxnet_mf_loops", "/data", str(epochs), loop,
            ]  # fmt: skip
            out = subprocess.run(command, capture_output=True, text=True, check=False)
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                sys.exit(f"the training benchmark failed:\n{out.stderr[-3000:]}")
            result = json.loads(lines[-1].removeprefix("RESULT "))
            for key, value in result["results"].items():
                best[run][key] = max(best[run].get(key, 0.0), value)
    return {
        "ratings": result["ratings"],
        "epochs": epochs,
        "rounds": rounds,
        "environments": environments,
        "results": {key: {run: best[run][key] for run in environments} for key in best["ours"]},
    }


def latency(url: str, body: bytes, repeats: int) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    timings = []
    for _ in range(repeats + 10):
        started = time.perf_counter()
        connection.request("POST", "/invocations", body, headers)
        response = connection.getresponse()
        response.read()
        timings.append(time.perf_counter() - started)
        assert response.status == 200
    return timings[10:]  # the first requests warm the worker


def ms(timings: list[float], q: int) -> float:
    return 1000 * statistics.quantiles(timings, n=100)[q - 1]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--vs-surprise" in args:  # bench/mxnet_mf_vs_surprise.py: our MF trainer against Surprise's SVD
        from bench import mxnet_mf_vs_surprise

        return mxnet_mf_vs_surprise.main([arg for arg in args if arg != "--vs-surprise"])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="alternating training rounds (best reported)")
    args = parser.parse_args(argv)
    image = build_image("mxnet-mf")
    work = Path(tempfile.mkdtemp(prefix="bench-mxnet-mf-"))
    ratings = synthetic.generate(seed=5)  # ML-100K's shape
    train, test = ratings.split(0.2)
    train.write(work / "train" / "u1.base")
    test.write(work / "test" / "u1.test")

    result = training_throughput(image, work / "train", args.epochs, args.rounds)
    rows = []
    for key, value in result["results"].items():
        model, batch = key.split("/")
        rows.append([model, batch, f"{value['course']:,.0f}", f"{value['course_threads']:,.0f}",
                     f"{value['ours']:,.0f}", f"{value['ours'] / value['course']:.1f}x",
                     f"{value['ours'] / value['course_threads']:.1f}x"])  # fmt: skip
    ratings_count, epochs = f"{result['ratings']:,}", result["epochs"]
    print(f"\n## Training samples/s, {ratings_count} ratings, {epochs} epochs, best of {args.rounds} rounds\n")
    threads = result["environments"]["course_threads"]
    print(markdown_table(["model", "batch", "course loop", f"course loop, {threads or 'same threads'}", "ours",
                          "ours / course", "ours / course, same threads"], rows))  # fmt: skip

    harness = Harness(work / "harness")
    trained = harness.train(image, {"epochs": 3}, {"train": ChannelSpec(work / "train")})
    if not trained.ok:
        sys.exit(trained.logs())
    users, items = train.users.tolist(), train.items.tolist()
    bodies = {
        "rating, 1 row": {"instances": [{"user_id": users[0], "item_id": items[0]}]},
        "rating, 1000 rows": {
            "instances": [{"user_id": u, "item_id": i} for u, i in zip(users[:1000], items[:1000], strict=True)]
        },  # noqa: E501,
        "top-10 recommendation, 1 user": {"instances": [{"user_id": users[0], "k": 10}]},
        "top-10 recommendation, 100 users": {"instances": [{"user_id": u, "k": 10} for u in range(1, 101)]},
        "similar items, 1 item": {"instances": [{"item_id": items[0], "k": 10}]},
    }
    serving = {}
    with harness.serve(image, trained.model_archive) as endpoint:
        for label, body in bodies.items():
            timings = latency(endpoint.url, json.dumps(body).encode(), args.repeats)
            serving[label] = {"p50_ms": ms(timings, 50), "p99_ms": ms(timings, 99)}
    print(f"\n## Serving latency over HTTP (sequential keep-alive, {args.repeats} requests)\n")
    print(markdown_table(["request", "p50 ms", "p99 ms"],
                         [[k, f"{v['p50_ms']:.2f}", f"{v['p99_ms']:.2f}"] for k, v in serving.items()]))  # fmt: skip
    command = "python -m bench.mxnet_mf " + " ".join(argv if argv is not None else sys.argv[1:])
    path = save("mxnet_mf", {"training": result, "serving": serving}, command.strip())
    print(f"\nsaved {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
