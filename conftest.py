"""Shared pytest fixtures for every test directory (unit, in-process, docker).

Tests that build or run images are marked `docker`. Without a docker engine they are skipped, unless
BYOC_REQUIRE_DOCKER=1 (CI), where that is an error. When a test fails, the logs of the containers it
registered with `dump_logs_on_failure` are printed.
"""

from __future__ import annotations

import os

import pytest

from tests.images import docker_available


def pytest_collection_modifyitems(config, items):
    if not any("docker" in item.keywords for item in items) or docker_available():
        return
    if os.environ.get("BYOC_REQUIRE_DOCKER") == "1":
        raise pytest.UsageError("BYOC_REQUIRE_DOCKER=1 but no docker engine answers")
    skip = pytest.mark.skip(reason="no docker engine (set BYOC_REQUIRE_DOCKER=1 to make this an error)")
    for item in items:
        if "docker" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def harness(tmp_path_factory):
    from local.harness import Harness

    return Harness(tmp_path_factory.mktemp("harness"))


@pytest.fixture
def dump_logs_on_failure(request):
    """Call it with an Endpoint or TrainingResult; their logs are printed if the test fails."""
    sources: list = []
    yield sources.append
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for source in sources:
            logs = source.logs() if callable(getattr(source, "logs", None)) else str(source)
            print(f"\n----- container logs -----\n{logs[-20000:]}")
