"""build.sh: errors, list, and push to a real registry with auth (pull back, same digest)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.images import ROOT, build_image, version
from tests.registry import local_registry

BUILD_SH = str(ROOT / "build.sh")


def run(*args, env=None):
    return subprocess.run([BUILD_SH, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_unknown_family_is_a_clear_error():
    result = run("build", "no-such-family")
    assert result.returncode != 0
    assert "unknown family 'no-such-family'; known: base mxnet tensorflow" in result.stderr


def test_unknown_command_and_help():
    assert "unknown command 'deploy'" in run("deploy").stderr
    assert "./build.sh build [FAMILY...] [--gpu]" in run("--help").stdout


def test_missing_docker_is_a_clear_error(tmp_path):
    # A PATH without docker: build.sh must say so instead of failing obscurely.
    for tool in ("bash", "cat", "sed", "dirname", "sort", "tr", "head"):
        path = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if path:
            (tmp_path / tool).symlink_to(path)
    result = run("build", "test-linear", env={"PATH": str(tmp_path)})
    assert result.returncode != 0 and "docker is not installed" in result.stderr


@pytest.mark.docker
def test_list_shows_tags_and_sizes():
    build_image("test-linear")
    result = run("list")
    assert result.returncode == 0
    assert f"byoc-test-linear   {version()}-cpu" in result.stdout or "byoc-test-linear" in result.stdout
    assert "SIZE" in result.stdout


@pytest.mark.docker
def test_push_to_a_registry_with_auth_and_pull_back(tmp_path):
    image = build_image("test-linear")
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    with local_registry(tmp_path) as registry:
        env = {
            "DOCKER_CONFIG": str(docker_config),
            "REGISTRY_USERNAME": registry.username,
            "REGISTRY_PASSWORD": registry.password,
        }
        pushed = run("push", "test-linear", "--registry", registry.address, env=env)
        assert pushed.returncode == 0, pushed.stderr
        remote = f"{registry.address}/byoc-test-linear:{version()}-cpu"
        line = pushed.stdout.strip().splitlines()[-1]
        assert line.startswith(remote + " sha256:")
        pushed_digest = line.split()[1]
        subprocess.run(["docker", "rmi", remote], capture_output=True, check=True)
        pull = subprocess.run(
            ["docker", "--config", str(docker_config), "pull", remote], capture_output=True, text=True
        )
        assert pull.returncode == 0, pull.stderr
        digests = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", remote],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert pushed_digest in digests
        pulled_id = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", remote], capture_output=True, text=True
        ).stdout
        local_id = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True
        ).stdout
        assert pulled_id == local_id

        wrong = run(
            "push",
            "test-linear",
            "--registry",
            registry.address,
            env={**env, "REGISTRY_PASSWORD": "wrong", "DOCKER_CONFIG": str(tmp_path / "fresh")},
        )
        assert wrong.returncode != 0
        assert f"docker login to {registry.address} as {registry.username} failed" in wrong.stderr

        anonymous = run(
            "push",
            "test-linear",
            "--registry",
            registry.address,
            env={"DOCKER_CONFIG": str(tmp_path / "empty"), "REGISTRY_USERNAME": ""},
        )
        assert anonymous.returncode != 0 and "credentials?" in anonymous.stderr
