"""Soak test of a serving image: right answers under hostile load, killed workers and a final SIGTERM.

    python -m bench.soak IMAGE [--model model.tar.gz] [--requests 10000] [--clients 8] [--kill-every 3]
                               [--min-seconds S]

It trains a small model on the family's sample data (or takes --model), computes the answer to every good
request in-process inside the image (reference.py), then runs `docker run IMAGE serve` as SageMaker does and
sends --requests from --clients concurrent clients, a new connection each, a third of them bad (every class
in cases.py), while --slow-clients trickle their headers, a serving worker is SIGKILLed every --kill-every
seconds, and the container gets SIGTERM as the last requests are in flight. The requests go round again
until --min-seconds have passed (by default two and a half kill intervals): a count of requests alone lasts
less each time serving gets faster, until a fast server has no worker killed under it. Every good answer is
compared with the reference. It prints a table, one JSON line, records the run in bench/results/soak.json,
and exits 1 when anything is wrong: a wrong answer, a 5xx, reset or accepted 2xx for bad input, a traceback,
a good request failed other than in flight on a killed worker, no worker killed although --kill-every asked
for it, or a stop other than exit 0 within 30 s of SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import datetime
import importlib
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import numpy as np
import requests

from bench.machine import RESULTS, machine_info, markdown_table
from local.harness import HARDENED, Endpoint, Harness
from local.opt_ml import ChannelSpec

from . import cases
from .compare import same_answer
from .wire import Outcome, Request, send

STOP_LIMIT_SECONDS = 30  # SageMaker sends SIGKILL 30 s after SIGTERM
RECOVERY_GRACE_SECONDS = 10  # a kill closer than this to the final SIGTERM may not see its replacement ready
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Kill:
    monotonic: float
    wall: float
    pid: int
    replaced_by: int | None = None  # host pid of the worker gunicorn started next


@dataclass
class Run:
    outcomes: list[tuple[Request, int | None, Outcome]] = field(default_factory=list)  # request, reference, outcome
    trickles: list[Outcome] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    spawned: list[tuple[float, int]] = field(default_factory=list)
    sigterm_at: float | None = None
    exit_code: int | None = None
    stop_seconds: float | None = None
    seconds: float = 0.0
    logs: str = ""
    names: dict[int, int] = field(default_factory=dict)  # host pid of a worker -> its pid in the container
    churn: collections.Counter = field(default_factory=collections.Counter)  # --multi-model: load/unload answers


# ------------------------------------------------------------------------------------------ set-up
def image_env(client: docker.DockerClient, image: str) -> dict[str, str]:
    config = client.images.get(image).attrs["Config"]
    return dict(item.split("=", 1) for item in config.get("Env") or [])


def family_of(env: dict[str, str], override: str | None) -> str:
    key = override or env.get("BYOC_SOAK_CASES") or (env.get("BYOC_SERVE") or "").split(".")[0]
    if key not in cases.FAMILIES:
        raise SystemExit(
            f"no soak cases for {key!r} (BYOC_SERVE={env.get('BYOC_SERVE')}); known: {list(cases.FAMILIES)}"
        )
    return key


def train_model(harness: Harness, image: str, family: str, workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    demo = importlib.import_module(f"local.demos.{cases.DEMOS[family]}").make(workdir)
    channels = {}
    for name, spec in demo.inputs.items():
        path, content_type = spec if isinstance(spec, tuple) else (spec, None)
        channels[name] = ChannelSpec(Path(path), content_type)
    print(f"training {family} on the sample data of local/demos/{cases.DEMOS[family]}.py ...", flush=True)
    result = harness.train(image, demo.hyperparameters, channels)
    if not result.ok:
        raise SystemExit(f"training failed:\n{result.logs()[-3000:]}")
    return result.model_archive


def reference_answers(image: str, model_dir: Path, good: list[Request], workdir: Path) -> list[dict]:
    """Every good request answered in-process inside the image: the answers the server must give."""
    (workdir / "requests.jsonl").write_text(cases.encode_requests(good))
    (workdir / "reference.py").write_text((Path(__file__).parent / "reference.py").read_text())
    command = [
        "docker", "run", "--rm", "--entrypoint", "python", "-v", f"{model_dir}:/opt/ml/model:ro",
        "-v", f"{workdir}:/soak", image, "/soak/reference.py", "/soak/requests.jsonl", "/soak/expected.jsonl",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"computing the reference answers failed:\n{done.stderr[-3000:]}")
    answers = [json.loads(line) for line in (workdir / "expected.jsonl").read_text().splitlines()]
    refused = [
        (r.kind, a["status"], base64.b64decode(a["body"])[:200])
        for r, a in zip(good, answers, strict=False)
        if a["status"] != 200
    ]
    if refused:
        raise SystemExit(f"{len(refused)} good requests are refused in-process (a bug in the cases): {refused[:3]}")
    return answers


# ------------------------------------------------------------------------------------------ workers
def worker_pids(master: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()}
    except OSError:
        return set()


def container_pid(host_pid: int) -> int | None:
    """The pid a process has inside its container (the last NSpid entry), as its log lines show it."""
    try:
        for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except OSError:
        pass
    return None


def watch_workers(master: int, run: Run, stop: threading.Event, names: dict[int, int]) -> None:
    known = worker_pids(master)
    for pid in known:
        names[pid] = container_pid(pid) or 0
    while not stop.is_set():
        current = worker_pids(master)
        for pid in sorted(current - known):
            names[pid] = container_pid(pid) or 0
            run.spawned.append((time.monotonic(), pid))
            waiting = next((k for k in run.kills if k.replaced_by is None), None)
            if waiting is not None:
                waiting.replaced_by = pid
        known = current | known
        time.sleep(0.02)


def kill_workers(master: int, every: float, run: Run, stop: threading.Event, rng: random.Random) -> None:
    while not stop.wait(every):
        workers = sorted(worker_pids(master))
        if not workers:
            continue
        pid = rng.choice(workers)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        run.kills.append(Kill(time.monotonic(), time.time(), pid))


# ------------------------------------------------------------------------------------------ the load
def run_load(
    endpoint: Endpoint, schedule: list[tuple[Request, int | None]], args, trickle: Request | None, rng: random.Random
) -> Run:
    run = Run()
    host, port = endpoint.url.removeprefix("http://").rsplit(":", 1)
    endpoint.container.reload()
    master = int(endpoint.container.attrs["State"]["Pid"])
    names = run.names
    position, lock = itertools.count(), threading.Lock()
    all_issued, stop_side = threading.Event(), threading.Event()
    results: list = []
    started = time.monotonic()

    def client() -> None:
        while True:
            with lock:
                index = next(position)
                # the schedule once, then round again until --min-seconds have passed
                if index >= len(schedule) and time.monotonic() - started >= args.min_seconds:
                    all_issued.set()
                    return
            request, reference = schedule[index % len(schedule)]
            results.append((request, reference, send(request, host, int(port), args.timeout)))

    def slow_client() -> None:
        while not stop_side.is_set():
            run.trickles.append(send(trickle, host, int(port), args.slow_timeout))

    def churn() -> None:  # --multi-model: another model loaded and unloaded all along
        session = requests.Session()
        calls = (("POST", "/models", json.dumps(CHURN_LOAD)), ("DELETE", "/models/churn", None))
        while not stop_side.is_set():
            for method, path, body in calls:
                started = time.monotonic()
                try:
                    answer = session.request(method, f"{endpoint.url}{path}", data=body, timeout=args.timeout)
                    status = str(answer.status_code)
                except requests.RequestException as err:
                    status = type(err).__name__
                    session = requests.Session()
                    call = Outcome(None, b"", None, started, time.monotonic(), status)
                    if _in_flight_on_a_kill(call, run.kills) or stop_side.is_set():
                        status = "in flight on a killed worker or at SIGTERM"
                run.churn[f"{method} {status}"] += 1

    sides = [
        threading.Thread(target=watch_workers, args=(master, run, stop_side, names), daemon=True),
        threading.Thread(target=kill_workers, args=(master, args.kill_every, run, stop_side, rng), daemon=True),
    ] + [threading.Thread(target=slow_client, daemon=True) for _ in range(args.slow_clients if trickle else 0)]
    if args.kill_every <= 0:
        sides.pop(1)
    if args.multi_model:
        sides.append(threading.Thread(target=churn, daemon=True))
    clients = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for thread in sides + clients:
        thread.start()
    all_issued.wait()
    # The last requests are in flight: stop as SageMaker stops an endpoint, and see that they are answered.
    stop_side.set()
    run.sigterm_at = time.monotonic()
    endpoint.container.kill(signal="SIGTERM")
    for thread in clients:
        thread.join()
    run.seconds = time.monotonic() - started
    try:
        run.exit_code = int(endpoint.container.wait(timeout=STOP_LIMIT_SECONDS + 30)["StatusCode"])
    except Exception:  # noqa: BLE001 - still running past SageMaker's SIGKILL: report it as such
        run.exit_code = None
    run.stop_seconds = time.monotonic() - run.sigterm_at
    run.outcomes = results
    run.logs = endpoint.container.logs(timestamps=True).decode("utf-8", "replace")
    for thread in sides:
        thread.join(timeout=args.slow_timeout + 5)
    return run


# ------------------------------------------------------------------------------------------ the verdict
def _in_flight_on_a_kill(outcome: Outcome, kills: list[Kill]) -> bool:
    return any(outcome.started - 0.05 <= k.monotonic <= outcome.ended + 0.05 for k in kills)


def _log_time(line: str) -> float | None:
    stamp = line.split(" ", 1)[0]
    try:
        return datetime.datetime.fromisoformat(stamp[:26] + "+00:00").timestamp()
    except ValueError:
        return None


def recoveries(run: Run) -> list[float | None]:
    """Seconds from each kill until its replacement worker had loaded the model (its 'model loaded' line);
    None where it never did. Kills too close to the final SIGTERM to judge are left out."""
    loaded: dict[int, float] = {}
    for line in run.logs.splitlines():
        if "model loaded" in line:
            for pid in {p for p in run.names.values() if p and f"[{p}]" in line}:
                when = _log_time(line)
                if when is not None:
                    loaded.setdefault(pid, when)
    # A replacement may itself be killed while still loading (the killer picks any worker): the first kill
    # then recovers when the replacement of that replacement has loaded, and so on down the chain.
    killed = {kill.pid: kill for kill in run.kills}
    found = []
    for kill in run.kills:
        replacement, seen = kill.replaced_by, set()
        while replacement is not None and replacement not in seen:
            seen.add(replacement)
            inner = run.names.get(replacement)
            if inner in loaded or replacement not in killed:
                break
            replacement = killed[replacement].replaced_by
        inner = run.names.get(replacement) if replacement else None
        if inner in loaded:
            found.append(loaded[inner] - kill.wall)
        elif run.sigterm_at is None or run.sigterm_at - kill.monotonic > RECOVERY_GRACE_SECONDS:
            found.append(None)
    return found


def judge(run: Run, expected: list[dict], args) -> dict:
    counts: collections.Counter = collections.Counter()
    bad_classes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    wrong_examples, other_examples = [], []
    latencies = []
    for request, reference, outcome in run.outcomes:
        in_flight = _in_flight_on_a_kill(outcome, run.kills)
        at_sigterm = run.sigterm_at is not None and outcome.ended >= run.sigterm_at
        if TRACEBACK in outcome.body.decode("utf-8", "replace"):
            counts["tracebacks_in_bodies"] += 1
        if request.good:
            counts["good"] += 1
            answer = expected[reference]
            if outcome.status == 200:
                latencies.append(outcome.ended - outcome.started)
                difference = same_answer(
                    base64.b64decode(answer["body"]), answer["content_type"], outcome.body, outcome.content_type
                )
                if difference is None:
                    counts["good_correct"] += 1
                else:
                    counts["wrong_answers"] += 1
                    wrong_examples.append(f"{request.kind}: {difference}")
            elif in_flight and (outcome.status is None or outcome.status >= 500):
                counts["good_failed_in_flight_on_killed_worker"] += 1
            elif at_sigterm:
                counts["good_lost_at_sigterm"] += 1
                other_examples.append(f"at SIGTERM, {request.kind}: {outcome.status or outcome.error}")
            else:
                counts["good_failed_other"] += 1
                other_examples.append(f"{request.kind}: {outcome.status or outcome.error} {outcome.body[:160]!r}")
            continue
        counts["bad"] += 1
        statuses = bad_classes[request.kind]
        if request.mode == "cut-off":
            statuses["closed by the client"] += 1
            continue
        if outcome.status is None:
            statuses["no answer"] += 1
            key = "bad_in_flight_on_killed_worker" if in_flight else "bad_no_answer"
            counts[key] += 1
            if not in_flight:
                other_examples.append(f"{request.kind}: no answer ({outcome.error})")
            continue
        statuses[outcome.status] += 1
        if outcome.status >= 500:
            if in_flight:
                counts["bad_in_flight_on_killed_worker"] += 1
            else:
                counts["bad_5xx"] += 1
                other_examples.append(f"{request.kind}: {outcome.status} {outcome.body[:160]!r}")
        elif outcome.status < 400:
            counts["bad_accepted"] += 1
            other_examples.append(f"{request.kind}: accepted with {outcome.status} {outcome.body[:120]!r}")
        else:
            try:
                body = json.loads(outcome.body)
                if not (isinstance(body, dict) and "error" in body and "error_type" in body):
                    raise ValueError
                counts["bad_4xx_json"] += 1
            except ValueError:
                counts["bad_4xx_not_json"] += 1
                other_examples.append(f"{request.kind}: {outcome.status} not a JSON error: {outcome.body[:120]!r}")
    log_lines = run.logs.splitlines()
    tracebacks = sum(TRACEBACK in line for line in log_lines)
    warnings = [
        line.split(" ", 1)[1] for line in log_lines
        if any(level in line for level in (" WARNING ", " ERROR ", " CRITICAL ", "[WARNING]", "[ERROR]", "[CRITICAL]"))
        and "was sent SIGKILL" not in line  # what this test does on purpose
    ]  # fmt: skip
    recovery = recoveries(run)
    trickled_cut = [t for t in run.trickles if (t.error and "cut off" in t.error) or t.status is not None]
    sent = len(run.outcomes)
    summary = {
        "requests": sent,
        "good": counts["good"],
        "bad": counts["bad"],
        "good_correct": counts["good_correct"],
        "wrong_answers": counts["wrong_answers"],
        "bad_5xx": counts["bad_5xx"],
        "bad_no_answer": counts["bad_no_answer"],
        "bad_accepted": counts["bad_accepted"],
        "bad_4xx_json": counts["bad_4xx_json"],
        "bad_4xx_not_json": counts["bad_4xx_not_json"],
        "good_failed_in_flight_on_killed_worker": counts["good_failed_in_flight_on_killed_worker"],
        "bad_in_flight_on_killed_worker": counts["bad_in_flight_on_killed_worker"],
        "good_failed_other": counts["good_failed_other"],
        "good_lost_at_sigterm": counts["good_lost_at_sigterm"],
        "tracebacks": tracebacks + counts["tracebacks_in_bodies"],
        "warning_lines": len(warnings),
        "kills": len(run.kills),
        "worker_restarts": len(run.spawned),
        "slowest_recovery_s": None if not recovery else (None if None in recovery else round(max(recovery), 2)),
        "slow_clients": len(run.trickles),
        "slow_clients_cut_off": len(trickled_cut),
        "exit_code": run.exit_code,
        "stop_seconds": round(run.stop_seconds, 2) if run.stop_seconds is not None else None,
        "requests_per_second": round(sent / run.seconds, 1) if run.seconds else None,
        "good_p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "good_p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2) if latencies else None,
        **({"multi_model_churn": dict(run.churn)} if args.multi_model else {}),
    }
    problems = []
    for key in ("wrong_answers", "bad_5xx", "bad_no_answer", "bad_accepted", "bad_4xx_not_json",
                "good_failed_other", "good_lost_at_sigterm", "tracebacks"):  # fmt: skip
        if summary[key]:
            problems.append(f"{key}={summary[key]}")
    if summary["exit_code"] != 0 or (summary["stop_seconds"] or 0) > STOP_LIMIT_SECONDS:
        problems.append(f"stop: exit {summary['exit_code']} after {summary['stop_seconds']} s")
    unexpected_churn = {k: v for k, v in run.churn.items() if k not in CHURN_EXPECTED}
    if unexpected_churn:
        problems.append(f"multi-model loads/unloads answered {unexpected_churn}")
    if args.kill_every > 0 and None in recovery:
        problems.append("a killed worker was not replaced by one that loaded the model")
    if args.kill_every > 0 and not run.kills:
        problems.append(f"no worker was killed: the run ended within --kill-every ({args.kill_every} s)")
    summary["passed"] = not problems
    summary["problems"] = problems
    details = {
        "wrong_examples": wrong_examples[:10],
        "other_examples": other_examples[:20],
        "warning_examples": sorted(set(warnings))[:15],
        "bad_classes": {kind: {str(k): v for k, v in c.items()} for kind, c in sorted(bad_classes.items())},
        "recoveries_s": [None if r is None else round(r, 2) for r in recovery],
    }
    return {"summary": summary, "details": details}


def report(image: str, family: str, verdict: dict) -> None:
    s, d = verdict["summary"], verdict["details"]
    rows = [
        ["requests (good / bad)", f"{s['requests']} ({s['good']} / {s['bad']})"],
        ["good requests answered correctly", s["good_correct"]],
        ["**wrong answers**", s["wrong_answers"]],
        ["**5xx for bad input**", s["bad_5xx"]],
        [
            "bad input accepted (2xx) / not answered / 4xx not JSON",
            f"{s['bad_accepted']} / {s['bad_no_answer']} / {s['bad_4xx_not_json']}",
        ],  # fmt: skip
        ["good: 5xx or reset in flight on a killed worker", s["good_failed_in_flight_on_killed_worker"]],
        ["good: 5xx, reset or timeout, other", s["good_failed_other"]],
        ["good: lost at SIGTERM", s["good_lost_at_sigterm"]],
        ["tracebacks (bodies + log)", s["tracebacks"]],
        ["log lines at WARNING+ (not our kills)", s["warning_lines"]],
        ["workers killed / restarted", f"{s['kills']} / {s['worker_restarts']}"],
        ["slowest recovery after a kill", f"{s['slowest_recovery_s']} s"],
        [
            "slow clients (trickled headers) / cut off by the server",
            f"{s['slow_clients']} / {s['slow_clients_cut_off']}",
        ],
        ["SIGTERM: exit code, seconds", f"{s['exit_code']}, {s['stop_seconds']} s"],
        ["req/s; good p50 / p99", f"{s['requests_per_second']}; {s['good_p50_ms']} / {s['good_p99_ms']} ms"],
    ]
    print(f"\n## Soak: {image} ({family})\n")
    print(markdown_table(["what", "count"], rows))
    print("\n### What each bad input got\n")
    print(markdown_table(["bad input", "answers"], [[k, ", ".join(f"{s}: {n}" for s, n in v.items())]
                                                    for k, v in d["bad_classes"].items()]))  # fmt: skip
    for title, key in (("wrong answers", "wrong_examples"), ("other failures", "other_examples"),
                       ("log lines at WARNING+", "warning_examples")):  # fmt: skip
        if d[key]:
            print(f"\n{title}:\n" + "\n".join(f"  - {line[:300]}" for line in d[key]))
    print("\nPASSED" if s["passed"] else f"\nFAILED: {', '.join(s['problems'])}")


def save_result(image: str, verdict: dict, command: str, name: str) -> Path:
    """Append this run to bench/results/<name>.json (every run of an image is kept) and rewrite the table of all
    runs in bench/results/<name>.md."""
    path = RESULTS / f"{name}.json"
    RESULTS.mkdir(exist_ok=True)
    saved = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    saved["runs"].setdefault(image, []).append({"command": command, "machine": machine_info(), **verdict})
    path.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    columns = [
        ("requests", "requests"), ("good_correct", "good right"), ("wrong_answers", "wrong"),
        ("bad_5xx", "5xx for bad"), ("good_failed_in_flight_on_killed_worker", "good lost on a killed worker"),
        ("good_failed_other", "good failed, other"), ("good_lost_at_sigterm", "lost at SIGTERM"),
        ("tracebacks", "tracebacks"), ("kills", "workers killed"), ("slowest_recovery_s", "slowest recovery s"),
        ("slow_clients_cut_off", "slow clients cut off"), ("exit_code", "exit"), ("stop_seconds", "stop s"),
        ("requests_per_second", "req/s"), ("passed", "passed"),
    ]  # fmt: skip
    rows = [
        [image, run["machine"]["date"], *[run["summary"].get(key) for key, _ in columns]]
        for image, runs in sorted(saved["runs"].items())
        for run in runs
    ]
    commands = sorted({run["command"] for runs in saved["runs"].values() for run in runs})
    machine = next(iter(saved["runs"].values()))[-1]["machine"]
    table = markdown_table(["image", "date", *[title for _, title in columns]], rows)
    (RESULTS / f"{name}.md").write_text(
        f"# {name}\n\nMachine: {machine['cores']} cores, {machine['cpu']}, {machine['memory_gb']} GB, docker "
        f"{machine['docker']}.\nCommands: {'; '.join(f'`{c}`' for c in commands)}\n\n{table}\n"
    )
    return path


SOAK_LOAD = {"model_name": "soak", "url": "/opt/ml/models/soak/model"}
CHURN_LOAD = {"model_name": "churn", "url": "/opt/ml/models/churn/model"}
# A load answers 200 (or 409: the unload has not happened, a worker was killed mid-call: the next turn sees);
# an unload 200 or 404. Anything else (5xx, a reset) is a failure of the multi-model contract.
CHURN_EXPECTED = {"POST 200", "POST 409", "DELETE 200", "DELETE 404"} | {
    f"{method} in flight on a killed worker or at SIGTERM" for method in ("POST", "DELETE")
}


def multi_model_root(model_dir: Path, workdir: Path) -> Path:
    """/opt/ml/models as SageMaker lays it out: the soak's model, and a copy for the load/unload churn."""
    root = workdir / "models"
    for name in ("soak", "churn"):
        shutil.copytree(model_dir, root / name / "model")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def as_multi_model(request: Request) -> Request:
    """The same request, to the loaded model's invoke path."""
    if request.mode == "raw":
        return dataclasses.replace(request, body=request.body.replace(b" /invocations ", b" /models/soak/invoke "))
    if request.path == "/invocations":
        return dataclasses.replace(request, path="/models/soak/invoke")
    return request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--model", type=Path, help="model.tar.gz or a model directory (default: train a small one)")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (a new connection per request)")
    parser.add_argument("--bad-share", type=float, default=1 / 3)
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between worker SIGKILLs (0: none)")
    parser.add_argument("--min-seconds", type=float,
                        help="send requests (the schedule round again) for at least this long (default: 2.5 x "
                             "--kill-every, so that workers are killed however fast the server answers)")  # fmt: skip
    parser.add_argument("--slow-clients", type=int, default=2, help="clients trickling their headers meanwhile")
    parser.add_argument("--timeout", type=float, default=10.0, help="client timeout per request, seconds")
    parser.add_argument("--slow-timeout", type=float, default=20.0, help="how long a slow client trickles at most")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the serving container")
    parser.add_argument("--hardened", action="store_true", help="serve read-only, a tmpfs /tmp, no capabilities")
    parser.add_argument("--cases", help="the family whose requests to send (default: from the image)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="soak", help="bench/results/<name>.json ('' to not save)")
    parser.add_argument("--multi-model", action="store_true",
                        help="serve as a multi-model endpoint: invocations through /models/soak/invoke, another "
                             "model loaded and unloaded all along")  # fmt: skip
    args = parser.parse_args(argv)
    if args.min_seconds is None:
        args.min_seconds = 2.5 * max(args.kill_every, 0.0)

    client = docker.from_env()
    family = family_of(image_env(client, args.image), args.cases)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    harness = Harness(workdir / "harness")
    model = args.model or train_model(harness, args.image, family, workdir / "data")
    model_dir = harness.model_directory(model)
    rng = np.random.default_rng(args.seed)
    good, family_bad = cases.FAMILIES[family](model_dir, rng)
    good = [Request(**{**r.__dict__, "good": True}) for r in good]
    bad = cases.generic_bad(good[0]) + family_bad
    print(f"{len(good)} distinct good requests, {len(bad)} classes of bad input; computing the reference answers ...",
          flush=True)  # fmt: skip
    expected = reference_answers(args.image, model_dir, good, workdir)
    pick = random.Random(args.seed)
    schedule: list[tuple[Request, int | None]] = []
    for _ in range(args.requests):
        if pick.random() < args.bad_share:
            schedule.append((pick.choice(bad), None))
        else:
            index = pick.randrange(len(good))
            schedule.append((good[index], index))
    environment = dict(item.split("=", 1) for item in args.env)
    options = dict(HARDENED) if args.hardened else {}
    if args.multi_model:
        schedule = [(as_multi_model(request), reference) for request, reference in schedule]
        environment["SAGEMAKER_MULTI_MODEL"] = "true"
        options["volumes"] = {str(multi_model_root(model_dir, workdir)): {"bind": "/opt/ml/models", "mode": "ro"}}
    endpoint = harness.start_endpoint(args.image, model_dir, environment=environment, container_options=options)
    if args.multi_model:
        loaded = requests.post(f"{endpoint.url}/models", data=json.dumps(SOAK_LOAD), timeout=60)
        if loaded.status_code != 200:
            harness.stop_endpoint(endpoint, timeout=1)
            sys.exit(f"loading the model on the multi-model endpoint failed: {loaded.status_code} {loaded.text}")
    print(f"serving in {endpoint.ready_seconds:.2f} s; {args.requests} requests (for at least {args.min_seconds} s) "
          f"from {args.clients} clients, a worker killed every {args.kill_every} s ...", flush=True)  # fmt: skip
    try:
        run = run_load(endpoint, schedule, args, cases.trickle(good[0]), pick)
    finally:
        harness.stop_endpoint(endpoint, timeout=1)
    verdict = judge(run, expected, args)
    report(args.image, family, verdict)
    command = "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.results:
        print(f"\nrecorded in {save_result(args.image, verdict, command, args.results)}")
    print(json.dumps({"image": args.image, **verdict["summary"]}))
    return 0 if verdict["summary"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
