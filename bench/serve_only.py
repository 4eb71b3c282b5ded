"""Serve-only images against the full images (issue 16, item 2), side by side on one model per family.

For each family: a small model trained in the full image (or --model FAMILY=model.tar.gz), then for the full
image (byoc-<family>:<version>-cpu) and the serve-only one (...-cpu-serve): image size, cold start (`docker run
... serve` to the first /ping 200, the harness's ready_seconds) and req/s with wrk at 8 connections on one
typical request; the two images interleaved, medians of --starts and --rounds. Prints a Markdown table, writes
bench/results/serve_only.json.

    python -m bench.serve_only [--families mxnet-mf fm ncf-tf gluon-cnn] [--seconds 10] [--starts 6] [--rounds 3]
                               [--models-dir DIR] [--model FAMILY=model.tar.gz]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import wrk as wrk_load
from bench.machine import RESULTS, markdown_table, save
from bench.serving import cold_start
from local.harness import Harness
from local.opt_ml import ChannelSpec
from tests.images import ROOT, build_image

FAMILIES = ("mxnet-mf", "fm", "ncf-tf", "gluon-cnn")


def _train(harness: Harness, family: str, data: Path) -> Path:
    """A small model of the family, trained in its full image; returns the model.tar.gz."""
    if family == "mxnet-mf":
        from mxnet_mf import synthetic

        synthetic.generate(num_users=300, num_items=400, num_ratings=20000, rank=8, seed=3).write(
            data / "train" / "ua.base", "u.data"
        )
        hp, channels = {"model": "mf", "num_factors": 16, "epochs": 2}, {"train": ChannelSpec(data / "train")}
    elif family == "fm":
        from byoc_runtime.codecs import recordio_protobuf
        from fm_client import mnist

        x, y = mnist.load_binary(mnist.SAMPLE_DIR, "train")
        (data / "train.rec").write_bytes(recordio_protobuf.write_dense(x, y))
        hp = {**mnist.SAMPLE_HYPERPARAMETERS, "epochs": 1}
        channels = {"train": ChannelSpec(data / "train.rec", "application/x-recordio-protobuf")}
    elif family == "ncf-tf":
        from ncf_tf import synthetic

        synthetic.write(synthetic.planted_ratings(), data, "u.data")
        hp, channels = {"epochs": 1, "pretrain": False, "eval_negatives": 20}, {"training": ChannelSpec(data)}
    else:
        sample = ROOT / "containers" / "gluon-cnn" / "sample" / "mnist"
        (data / "train").mkdir()
        for source in sample.glob("train-*"):
            shutil.copy(source, data / "train" / source.name)
        hp, channels = {"epochs": 1, "log_interval": 0}, {"train": ChannelSpec(data / "train")}
    result = harness.train(build_image(family), hp, channels)
    if not result.ok:
        raise RuntimeError(f"training {family} failed:\n{result.logs()[-3000:]}")
    return result.model_archive


def _request(family: str) -> tuple[bytes, str]:
    """One typical request: (body, content type)."""
    if family == "mxnet-mf":
        return json.dumps({"instances": [{"user_id": 1, "item_id": 2}]}).encode(), "application/json"
    if family == "fm":
        return json.dumps({"instances": [{"features": [0.0] * 700 + [0.5] * 84}]}).encode(), "application/json"
    if family == "ncf-tf":
        return json.dumps({"instances": [{"input_1": 3, "input_2": 17}]}).encode(), "application/json"
    image = (np.arange(784) % 255).reshape(1, 1, 28, 28).tolist()
    return json.dumps({"instances": image}).encode(), "application/json"


def _size_mb(image: str) -> float:
    inspect = ["docker", "image", "inspect", "--format", "{{.Size}}", image]
    return int(subprocess.run(inspect, capture_output=True, text=True).stdout) / 1e6


def load(harness: Harness, image: str, model: Path, family: str, seconds: int) -> dict:
    body, content_type = _request(family)
    with harness.serve(image, model) as endpoint:
        answer = endpoint.invoke(body, content_type)
        if answer.status_code != 200:
            raise RuntimeError(f"{image}: {answer.status_code} {answer.text}")
        endpoint.session.close()
        if not wrk_load.available():
            return {}
        return wrk_load.post(wrk_load.direct_url(endpoint), body, content_type, seconds=seconds)


def compare(harness: Harness, images: dict[str, str], model: Path, family: str, args) -> dict[str, dict]:
    """Both images, interleaved (full, serve-only, full, ...) so that the shared machine's load falls on both
    alike; the median of --rounds wrk runs and of --starts cold starts each."""
    runs: dict[str, list[dict]] = {kind: [] for kind in images}
    starts: dict[str, list[float]] = {kind: [] for kind in images}
    for _ in range(args.rounds):
        for kind, image in images.items():
            starts[kind] += cold_start(harness, image, model, max(1, args.starts // args.rounds))
            runs[kind].append(load(harness, image, model, family, args.seconds))
    out = {}
    for kind, image in images.items():
        rps = [r["rps"] for r in runs[kind] if r]
        p99 = [r["p99_ms"] for r in runs[kind] if r]
        out[kind] = {"image": image, "size_mb": round(_size_mb(image)), "cold_start_s": starts[kind],
                     "cold_start_median_s": statistics.median(starts[kind]), "wrk_runs": runs[kind],
                     **({"rps": statistics.median(rps), "p99_ms": statistics.median(p99)} if rps else {})}  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--model", action="append", default=[], help="FAMILY=model.tar.gz instead of training one")
    parser.add_argument("--models-dir", type=Path, help="keep the trained models here (<family>.tar.gz) and reuse them")
    parser.add_argument("--seconds", type=int, default=10, help="wrk seconds per image")
    parser.add_argument("--starts", type=int, default=6, help="cold starts per image (median reported)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per image, interleaved (median reported)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found (apt-get install wrk): req/s columns stay empty", file=sys.stderr)
    given = dict(item.split("=", 1) for item in args.model)
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        harness = Harness(Path(tmp) / "harness")
        try:
            for family in args.families:
                data = Path(tmp) / family
                data.mkdir()
                kept = args.models_dir / f"{family}.tar.gz" if args.models_dir else None
                if family in given:
                    model = Path(given[family])
                elif kept and kept.is_file():
                    model = kept
                else:
                    model = _train(harness, family, data)
                    if kept:
                        kept.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(model, kept)
                images = {"full": build_image(family), "serve": build_image(family, serve=True)}
                results[family] = compare(harness, images, model, family, args)
                full, serve = results[family]["full"], results[family]["serve"]
                for kind, row in (("full", full), ("serve-only", serve)):
                    rps, p99 = row.get("rps", float("nan")), row.get("p99_ms", float("nan"))
                    rows.append([family, kind, row["size_mb"], f"{row['cold_start_median_s']:.2f}", f"{rps:.0f}",
                                 f"{p99:.1f}"])  # fmt: skip
        finally:
            harness.cleanup()
    headers = ["family", "image", "size MB", "cold start s (median)", "req/s (wrk, 8 conn.)", "p99 ms"]
    print(markdown_table(headers, rows))
    command = ("python -m bench.serve_only " + " ".join(sys.argv[1:])).strip()
    for family in results:
        results[family]["command"] = command
    previous = RESULTS / "serve_only.json"  # a run of some families keeps the others' results
    if previous.is_file():
        results = {**json.loads(previous.read_text()).get("families", {}), **results}
    print(f"\nsaved {save('serve_only', {'families': results}, command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
