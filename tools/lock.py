"""Hash-locked Python dependencies for every image layer, and the check that keeps them in step.

    python3 -m tools.lock            relock what changed (uv pip compile --generate-hashes); --all: relock all
    python3 -m tools.lock --check    offline: fail when a requirements file changed and its lock did not

Locks (the Dockerfiles install them with `pip install --no-deps --require-hashes`):
- containers/base/locks/<framework>-<variant>.txt, from containers/base/requirements.txt plus
  requirements-<framework>-<variant>.txt: the virtualenv of byoc-base, byoc-mxnet, byoc-tensorflow;
- <family>/requirements.lock, from a family's own requirements.txt, resolved against its parent layer's lock
  (what the parent already has is left out: the family installs only what it adds).

Each lock's header carries the sha256 of its inputs (and of the parent lock, for a family), so the check needs
no network: a changed input with an unchanged lock fails CI with the file to relock. Locks are resolved for
the images' interpreter and platform (CPython 3.11, manylinux x86_64 on Debian 12's glibc 2.36), not the host's.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "containers" / "base"
FRAMEWORKS = ("none", "mxnet", "tensorflow")
VARIANTS = ("cpu", "gpu")
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_36"
INDEX = "https://pypi.org/simple"
DIGEST_LINE = "# inputs-sha256: "
PROVIDED_LINE = "# provided: "
# Packages another one in the same lock provides: tf-keras asks for `tensorflow`, whose module tensorflow-cpu
# ships (a CPU-only build of the same thing); installing both unpacks two TensorFlows into one folder.
PROVIDERS = {"tensorflow-cpu": "tensorflow"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.M)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` line (comments and hashes ignored)."""
    return {normalize(m.group(1)): m.group(2) for m in PIN.finditer(text)}


@dataclass(frozen=True)
class Target:
    lock: Path
    inputs: tuple[Path, ...]
    parents: tuple[Path, ...] = ()  # the parent layer's locks (a family's); the first one is resolved against

    def digest(self) -> str:
        sha = hashlib.sha256()
        for path in (*self.inputs, *self.parents):
            sha.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        return sha.hexdigest()

    def recorded_digest(self) -> str | None:
        if not self.lock.is_file():
            return None
        for line in self.lock.read_text().splitlines():
            if line.startswith(DIGEST_LINE):
                return line[len(DIGEST_LINE) :].strip()
        return None


def targets() -> list[Target]:
    found = [
        Target(
            BASE / "locks" / f"{fw}-{variant}.txt",
            (BASE / "requirements.txt", BASE / f"requirements-{fw}-{variant}.txt"),
        )
        for fw in FRAMEWORKS
        for variant in VARIANTS
    ]
    for requirements in sorted(
        [*ROOT.glob("containers/*/requirements.txt"), *ROOT.glob("tests/families/*/requirements.txt")]
    ):
        family = requirements.parent
        if family == BASE:
            continue
        parent = re.search(r"^ARG FRAMEWORK_IMAGE=byoc-([a-z-]+):", (family / "Dockerfile").read_text(), re.M)
        framework = {"base": "none"}.get(parent.group(1), parent.group(1)) if parent else None
        if framework not in FRAMEWORKS:
            sys.exit(f"lock: {family.relative_to(ROOT)} has requirements.txt but its parent is not a base layer")
        parents = tuple(BASE / "locks" / f"{framework}-{variant}.txt" for variant in VARIANTS)
        found.append(Target(family / "requirements.lock", (requirements,), parents))
    return found


def compile_lock(target: Target) -> str:
    """The lock's text: uv's resolution with hashes, under a header that names its inputs and their digest."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "uv", "pip", "compile", *map(str, target.inputs),
            "--generate-hashes", "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM,
            "--index-url", INDEX, "--no-header", "--quiet", "-o", f"{tmp}/lock.txt",
        ]  # fmt: skip
        if target.parents:
            command += ["--constraint", str(target.parents[0])]
        asked = pins("".join(p.read_text() for p in target.inputs))
        provided = sorted(PROVIDERS[name] for name in asked if name in PROVIDERS)
        for name in provided:
            command += ["--no-emit-package", name]
        result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if result.returncode != 0:
            sys.exit(f"lock: resolving {target.lock.relative_to(ROOT)} failed:\n{result.stderr.strip()}")
        body = Path(f"{tmp}/lock.txt").read_text()
    if target.parents:
        body = _without_parent_packages(body, target)
    names = " ".join(p.relative_to(ROOT).as_posix() for p in target.inputs)
    header = [
        "# Locked by `./build.sh lock` (uv pip compile --generate-hashes) for CPython 3.11 on manylinux x86_64, from:",
        f"#   {names}",
    ]
    if target.parents:
        header.append(f"# against {target.parents[0].relative_to(ROOT).as_posix()} (what that layer has is left out)")
    header += [
        f"{PROVIDED_LINE}{name} (by {provider}: not installed)"
        for provider, name in PROVIDERS.items()
        if name in provided
    ]
    header += [
        "# Do not edit: the Dockerfile installs exactly these (pip --no-deps --require-hashes).",
        f"{DIGEST_LINE}{target.digest()}",
    ]
    return "\n".join(header) + "\n" + body


def _without_parent_packages(body: str, target: Target) -> str:
    """Drop the packages every parent lock already pins at the same version; a family that needs another
    version of one of them than its parent has cannot be layered on it."""
    parents = [pins(p.read_text()) for p in target.parents]
    blocks = re.split(r"\n(?=[A-Za-z0-9])", body.strip())
    kept = []
    for block in blocks:
        found = pins(block)
        if not found:
            kept.append(block)
            continue
        ((name, version),) = found.items()
        have = {parent.get(name) for parent in parents}
        if have == {version}:
            continue
        if have != {None}:
            sys.exit(f"lock: {target.inputs[0].relative_to(ROOT)} needs {name}=={version}, its parent layer has {have}")
        kept.append(block)
    return "\n".join(kept) + "\n"


def check(all_targets: list[Target]) -> list[str]:
    """Problems that make a lock stale, without the network."""
    problems = []
    for target in all_targets:
        where = target.lock.relative_to(ROOT)
        if not target.lock.is_file():
            problems.append(f"{where} is missing")
            continue
        if target.recorded_digest() != target.digest():
            changed = ", ".join(p.relative_to(ROOT).as_posix() for p in (*target.inputs, *target.parents))
            problems.append(f"{where} is older than its inputs ({changed})")
            continue
        locked = pins(target.lock.read_text())
        for path in target.inputs:
            for name, version in pins(path.read_text()).items():
                if locked.get(name) != version and not (target.parents and _in_parents(target, name, version)):
                    problems.append(f"{where} has {name}=={locked.get(name)}, {path.relative_to(ROOT)} asks {version}")
    return problems


def check_debian() -> list[str]:
    """containers/base/debian/<stage>.lock against the package lists they were made from (build.sh lock_debian)."""
    problems, directory = [], BASE / "debian"
    for stage, inputs in (("runtime", ["runtime.txt"]), ("builder", ["runtime.txt", "builder.txt"])):
        lock = directory / f"{stage}.lock"
        if not lock.is_file():
            problems.append(f"{lock.relative_to(ROOT)} is missing")
            continue
        digest = hashlib.sha256(b"".join((directory / name).read_bytes() for name in inputs)).hexdigest()
        if f"{DIGEST_LINE}{digest}" not in lock.read_text().splitlines():
            problems.append(f"{lock.relative_to(ROOT)} is older than {', '.join(inputs)}")
    return problems


def _in_parents(target: Target, name: str, version: str) -> bool:
    return all(pins(p.read_text()).get(name) == version for p in target.parents)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build.sh lock", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="offline: fail when a lock is older than its inputs")
    parser.add_argument("--all", action="store_true", help="relock every target, changed or not")
    args = parser.parse_args(argv)
    all_targets = targets()
    if args.check:
        problems = check(all_targets) + check_debian()
        for problem in problems:
            print(f"lock: {problem}", file=sys.stderr)
        if problems:
            print("lock: run ./build.sh lock and commit the locks", file=sys.stderr)
            return 1
        print(f"lock: {len(all_targets)} Python and 2 Debian locks match their requirements")
        return 0
    # Base locks first: a family's lock is resolved against them.
    for target in all_targets:
        if not args.all and target.recorded_digest() == target.digest():
            continue
        target.lock.parent.mkdir(parents=True, exist_ok=True)
        target.lock.write_text(compile_lock(target))
        print(f"lock: wrote {target.lock.relative_to(ROOT)} ({len(pins(target.lock.read_text()))} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
