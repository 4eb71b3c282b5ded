"""Supply chain (issue 13): hash-locked Python and Debian packages, provenance labels, scanning on push.

The SBOM and the vulnerability audit have their own files (test_sbom.py, test_audit.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest

from tests.images import ROOT, build_image, version
from tools import lock

DOCKERFILES = sorted([*ROOT.glob("containers/*/Dockerfile"), *ROOT.glob("containers/*/Dockerfile.serve"),
                      *ROOT.glob("tests/families/*/Dockerfile")])  # fmt: skip
OCI = ("source", "revision", "version", "created", "licenses", "title")


def _copy_of_the_project(tmp_path: Path, version_tag: str | None = None) -> Path:
    """What build.sh needs, in a directory of its own (a test may break it at will)."""
    copy = tmp_path / "project"
    copy.mkdir()
    for name in ("build.sh", "VERSION", "tools"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, copy / name)
    shutil.copytree(ROOT / "containers", copy / "containers", ignore=shutil.ignore_patterns("__pycache__", "tests"))
    if version_tag:
        (copy / "VERSION").write_text(version_tag + "\n")
    return copy


# ------------------------------------------------------------------------------ locked dependencies
def test_no_dockerfile_installs_python_packages_without_hashes():
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert not re.search(r"\bpip3? install\b", text), f"{dockerfile}: pip install outside install-locked"
        for lock_file in re.findall(r"RUN (?:PATH=\S+ )?install-locked (\S+)", text):
            assert lock_file.endswith((".lock", "${VARIANT}.txt")), f"{dockerfile}: installs {lock_file}, not a lock"
    script = (ROOT / "containers/base/bin/install-locked").read_text()
    assert all(flag in script for flag in ("--require-hashes", "--no-deps", "--only-binary :all:"))


def test_every_lock_matches_its_requirements():
    assert lock.check(lock.targets()) == []
    assert lock.check_debian() == []


def test_every_lock_pins_every_package_with_hashes():
    for target in lock.targets():
        blocks = re.split(r"\n(?=[A-Za-z0-9])", target.lock.read_text())
        packages = [b for b in blocks if lock.pins(b)]
        assert packages, target.lock
        for block in packages:
            assert "--hash=sha256:" in block, f"{target.lock}: {block.splitlines()[0]} has no hash"


def test_a_requirement_changed_without_relocking_fails_the_check(tmp_path):
    copy = _copy_of_the_project(tmp_path)
    check = [str(copy / "build.sh"), "lock", "--check"]
    assert subprocess.run(check, capture_output=True, text=True).returncode == 0
    with open(copy / "containers/base/requirements.txt", "a") as file:
        file.write("requests==2.32.3\n")
    with open(copy / "containers/base/debian/runtime.txt", "a") as file:
        file.write("curl\n")
    result = subprocess.run(check, capture_output=True, text=True)
    assert result.returncode == 1
    assert "containers/base/locks/mxnet-cpu.txt is older than its inputs" in result.stderr
    assert "containers/base/debian/runtime.lock is older than runtime.txt" in result.stderr
    assert "run ./build.sh lock" in result.stderr


@pytest.mark.docker
def test_a_tampered_hash_fails_the_build_naming_the_package(tmp_path):
    build_image("gluon-cnn")  # its parents' layers are cached: only Pillow's install runs again
    tag = "0.0.0-tampered"
    copy = _copy_of_the_project(tmp_path, tag)
    locked = copy / "containers/gluon-cnn/requirements.lock"
    locked.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, locked.read_text()))
    try:
        result = subprocess.run([str(copy / "build.sh"), "build", "gluon-cnn"], capture_output=True, text=True)
    finally:
        for name in ("base", "mxnet", "gluon-cnn"):
            subprocess.run(["docker", "rmi", f"byoc-{name}:{tag}-cpu"], capture_output=True)
    assert result.returncode != 0
    assert "building byoc-gluon-cnn:0.0.0-tampered-cpu failed" in result.stderr
    assert "does not match the hashes its lock pins (tampered download or lock?): pillow==13.0.0" in result.stderr


@pytest.mark.docker
@pytest.mark.parametrize("family", ["mxnet-mf", "ncf-tf", "test-linear"])
def test_an_image_holds_exactly_its_locked_packages(family):
    image = build_image(family)
    framework = {"mxnet-mf": "mxnet", "ncf-tf": "tensorflow", "test-linear": "none"}[family]
    script = (
        "dpkg-query -W -f '${db:Status-Abbrev} ${Package}=${Version}\\n' | awk '$1 == \"ii\" {print $2}' | sort;"
        " echo ---; cat /opt/byoc/debian-packages.lock; echo ---; python -m pip list --format freeze 2>/dev/null"
    )
    out = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", image, "-c", script],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    installed, recorded, frozen = out.split("---\n")
    repository = (ROOT / "containers/base/debian/runtime.lock").read_text()
    strip = lambda text: sorted(line for line in text.splitlines() if line and not line.startswith("#"))  # noqa: E731
    assert strip(installed) == strip(recorded) == strip(repository)
    python = lock.pins(frozen)
    locked = lock.pins((ROOT / f"containers/base/locks/{framework}-cpu.txt").read_text())
    family_lock = ROOT / f"containers/{family}/requirements.lock"
    if family_lock.exists():  # what the family adds on top of its framework layer (in /opt/family/lib)
        locked.update(lock.pins(family_lock.read_text()))
    for seeded in ("pip", "setuptools"):  # the virtualenv's own (Debian's python3-venv), unless the lock has them
        if seeded not in locked:
            python.pop(seeded, None)
    locked.pop("libclang", None)  # TensorFlow's build-time clang bindings: the Dockerfile deletes them
    assert python == locked


# ------------------------------------------------------------------------------ provenance
def expected_revision() -> str:
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    paths = ["containers", "tests/families", "build.sh", "VERSION"]
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], capture_output=True, text=True, cwd=ROOT)
    return head + ("-dirty" if dirty.stdout.strip() else "")


@pytest.mark.docker
@pytest.mark.parametrize("family", ["mxnet-mf", "ncf-tf", "gluon-cnn", "fm", "test-linear", "base", "mxnet"])
def test_every_image_carries_the_oci_provenance_labels(family):
    image = build_image(family)
    labels = _labels(image)
    for key in OCI:
        assert labels.get(f"org.opencontainers.image.{key}"), f"{image} lacks org.opencontainers.image.{key}"
    assert labels["org.opencontainers.image.revision"] == expected_revision()
    assert labels["org.opencontainers.image.title"] == f"byoc-{family}"
    assert labels["org.opencontainers.image.version"] == version()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0" and (ROOT / "LICENSE").is_file()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"])


def _labels(image: str) -> dict:
    import json

    out = subprocess.run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out)


@pytest.mark.docker
def test_list_shows_each_images_revision():
    build_image("test-linear")
    out = subprocess.run([str(ROOT / "build.sh"), "list"], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].split() == ["REPOSITORY", "TAG", "SIZE", "CREATED", "REVISION"]
    row = next(line for line in out.splitlines() if line.startswith("byoc-test-linear ") and f"{version()}-cpu" in line)
    assert row.split()[-1] == expected_revision()


# ------------------------------------------------------------------------------ scanning on push
@pytest.mark.docker
def test_push_to_ecr_creates_repositories_that_scan_on_push(tmp_path):
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_ENDPOINT_URL_ECR": endpoint, "DOCKER_CONFIG": str(tmp_path)}  # fmt: skip
        build_image("test-linear")
        client = boto3.client("ecr", region_name="eu-west-1", endpoint_url=endpoint,
                              aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        client.create_repository(repositoryName="byoc-base")  # already there: left as it is
        push = [str(ROOT / "build.sh"), "push", "test-linear", "base", "--ecr", "--region", "eu-west-1"]
        result = subprocess.run(push, capture_output=True, text=True, env=env)
        # The stand-in has no registry behind its login token: the push stops there, after the repositories.
        assert "created ECR repository byoc-test-linear" in result.stderr, result.stderr
        assert "created ECR repository byoc-base" not in result.stderr
        repositories = {r["repositoryName"]: r for r in client.describe_repositories()["repositories"]}
        assert repositories["byoc-test-linear"]["imageScanningConfiguration"] == {"scanOnPush": True}
    finally:
        server.stop()
