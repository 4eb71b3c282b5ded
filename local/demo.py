"""The main job's report: every family that exists, trained on embedded sample data, deployed and asked for
predictions in SageMaker SDK local mode. `python -m local.demo [--families a b]` (./run.sh builds first).

Each family contributes a Demo in local/demos/<family>.py: sample data (generated in the public formats,
or the small MNIST sample shipped with the repository), hyperparameters and a few requests.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Request:
    label: str
    body: Any
    content_type: str = "application/json"
    accept: str = "application/json"


@dataclass
class Demo:
    family: str  # image byoc-<family>
    inputs: dict[str, Any]  # channel -> path or (path, content type)
    hyperparameters: dict[str, Any]
    requests: list[Request]
    metric_names: list[str] = field(default_factory=list)
    instance_count: int = 1
    transform: Request | None = None  # body = path of a file, split by line


def available_families() -> list[str]:
    demos = sorted(p.stem for p in (Path(__file__).parent / "demos").glob("*.py") if not p.stem.startswith("_"))
    return [d for d in demos if _family_dir(d.replace("_", "-")).exists()]


def _family_dir(family: str) -> Path:
    if family.startswith("test-"):
        return ROOT / "tests/families" / family.removeprefix("test-")
    return ROOT / "containers" / family


def _metrics(run) -> dict[str, Any]:
    archive = run.workdir / "output" / "output.tar.gz"
    if not archive.exists():
        return {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name.endswith("metrics.json"):
                return json.load(tar.extractfile(member))
    return {}


def run_demo(name: str, version: str) -> dict[str, Any]:
    from local.sdk import local_run

    module = importlib.import_module(f"local.demos.{name}")
    workdir = Path(tempfile.mkdtemp(prefix=f"demo-{name}-"))
    demo: Demo = module.make(workdir)
    image = f"byoc-{demo.family}:{version}-cpu"
    report: dict[str, Any] = {"family": demo.family, "image": image}
    with local_run(image) as run:
        started = time.perf_counter()
        model_data = run.fit(demo.inputs, demo.hyperparameters, instance_count=demo.instance_count)
        report["train_s"] = time.perf_counter() - started
        metrics = _metrics(run)
        report["metrics"] = {k: metrics[k] for k in demo.metric_names if k in metrics} or metrics
        started = time.perf_counter()
        run.deploy(model_data)
        report["deploy_s"] = time.perf_counter() - started
        report["predictions"] = []
        for request in demo.requests:
            started = time.perf_counter()
            answer = run.predict(request.body, content_type=request.content_type, accept=request.accept)
            if isinstance(answer, bytes):
                answer = answer.decode()
            report["predictions"].append(
                {"request": request.label, "ms": (time.perf_counter() - started) * 1000, "answer": answer}
            )
        if demo.transform is not None:
            started = time.perf_counter()
            out = run.transform(
                demo.transform.body, content_type=demo.transform.content_type, accept=demo.transform.accept
            )
            lines = [line for line in out.read_text().splitlines() if line.strip()]
            report["transform"] = {
                "label": demo.transform.label,
                "s": time.perf_counter() - started,
                "lines": len(lines),
                "first": lines[:2],
            }
    return report


def print_report(reports: list[dict[str, Any]]) -> None:
    print("\n# Main job: every family in SageMaker local mode\n")
    print("| family | train s | deploy s | metrics |")
    print("|---|---|---|---|")
    for r in reports:
        if "error" in r:
            print(f"| {r['family']} | FAILED | | {r['error']} |")
            continue
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["metrics"].items())
        print(f"| {r['family']} | {r['train_s']:.1f} | {r['deploy_s']:.1f} | {metrics} |")
    for r in reports:
        if "error" in r:
            continue
        print(f"\n## {r['family']} predictions\n")
        for p in r["predictions"]:
            text = json.dumps(p["answer"]) if not isinstance(p["answer"], str) else p["answer"].strip()
            print(f"- {p['request']} ({p['ms']:.0f} ms): {text[:300]}")
        if "transform" in r:
            t = r["transform"]
            print(f"- batch transform, {t['label']} ({t['s']:.1f} s): {t['lines']} lines, first: {t['first']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", help="default: every family with a demo")
    args = parser.parse_args(argv)
    version = (ROOT / "VERSION").read_text().strip()
    names = [f.replace("-", "_") for f in args.families] if args.families else available_families()
    started = time.perf_counter()
    reports = []
    for name in names:
        print(f"\n=== {name}: train, deploy, predict in local mode ===", flush=True)
        try:
            reports.append(run_demo(name, version))
        except Exception as err:  # noqa: BLE001 - one family failing must not hide the others' results
            traceback.print_exc()
            reports.append({"family": name, "error": f"{type(err).__name__}: {err}"[:200]})
    print_report(reports)
    print(f"\nwall time: {time.perf_counter() - started:.0f} s")
    return 1 if any("error" in r for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
