"""local.conformance: green for our images, red with exactly the right rows for a broken one."""

from __future__ import annotations

import numpy as np
import pytest

from local.conformance import Conformance
from local.opt_ml import ChannelSpec
from tests.images import build_image

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def csv_channel(tmp_path_factory):
    path = tmp_path_factory.mktemp("conformance") / "train.csv"
    x = np.random.default_rng(0).normal(size=(100, 3))
    np.savetxt(path, np.c_[x @ [1.0, 2.0, 3.0], x], delimiter=",")
    return {"train": ChannelSpec(path, "text/csv")}


def statuses(results):
    return {check.name: check.status for check in results}


def test_our_image_is_conformant(harness, csv_channel):
    results = Conformance(
        build_image("test-linear"), {}, csv_channel, b'{"instances": [[1, 2, 3]]}', "application/json", harness
    ).run()
    assert all(status == "PASS" for status in statuses(results).values()), statuses(results)
    assert {"multi-model: load, list, describe", "multi-model: invoke", "multi-model: unload"} <= set(statuses(results))


def test_a_broken_image_fails_the_right_rows(harness, csv_channel):
    image = build_image("test-broken")
    results = statuses(Conformance(image, {}, csv_channel, b'{"a": 1}', "application/json", harness).run())
    # Even a server that ignores SIGTERM and the port must not be left running.
    assert not harness.client.containers.list(all=True, filters={"ancestor": image})
    assert results == {
        "label accept-bind-to-port=true": "FAIL",
        "train writes a model": "PASS",
        "failing train writes output/failure": "FAIL",
        "ping": "PASS",
        "invocations": "PASS",
        "unsupported content type": "FAIL",
        "malformed body": "FAIL",
        "execution-parameters": "N/A",
        "SIGTERM stops the server": "FAIL",
        "SAGEMAKER_BIND_TO_PORT": "FAIL",
        "multi-model endpoint": "FAIL",  # it inherits the multi-models label and does not serve the calls
    }
