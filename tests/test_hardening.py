"""Least privilege, proven on the real images (issue 13).

- Every family serves correct answers with a read-only root, a tmpfs /tmp, no capabilities and
  no-new-privileges (bench.soak --hardened: every good answer compared with the in-image reference, every bad
  one a 4xx JSON), and its image also starts that way with only `--read-only --tmpfs /tmp`.
- A serving worker that tries to write all over the image (tests/families/intruder) succeeds only in the
  temporary directories: run as SageMaker runs it (root, default capabilities: the workers drop to `byoc`),
  hardened, and as `--user byoc`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.soak.__main__ import main as soak
from local.harness import HARDENED
from local.opt_ml import ChannelSpec
from tests.images import build_image

pytestmark = pytest.mark.docker
TEMPORARY = ["/tmp/probe", "/dev/shm/probe"]
ELSEWHERE = [
    "/probe", "/etc/probe", "/root/probe", "/home/probe", "/var/tmp/probe", "/run/lock/probe", "/var/log/probe",
    "/usr/local/bin/probe", "/opt/ml/probe", "/opt/ml/model/probe", "/opt/venv/probe",
    "/opt/venv/lib/python3.11/site-packages/probe.py", "/opt/byoc/src/byoc_runtime/probe.py",
    "/opt/family/src/probe.py", "/opt/intruder/src/intruder_family/probe.py",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("family", ["test-linear", "mxnet-mf", "ncf-tf", "gluon-cnn", "fm"])
def test_every_family_serves_right_answers_read_only_without_capabilities(family, capsys):
    code = soak([build_image(family), "--hardened", "--requests", "300", "--kill-every", "0", "--slow-clients", "1",
                 "--results", ""])  # fmt: skip
    output = capsys.readouterr().out
    assert code == 0, output[-6000:]
    result = json.loads(output.strip().splitlines()[-1])
    assert result["good_correct"] == result["good"] > 0


@pytest.fixture(scope="module")
def intruder_model(harness, tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    path = tmp_path_factory.mktemp("data") / "train.csv"
    np.savetxt(path, np.c_[x @ [1.0, 2.0, 3.0], x], delimiter=",")
    result = harness.train(build_image("test-linear"), {}, {"train": ChannelSpec(path, "text/csv")})
    assert result.ok, result.logs()
    return result.model_archive


@pytest.mark.parametrize(
    "how, options",
    [
        ("as SageMaker runs it", None),
        ("hardened", HARDENED),
        ("hardened, as byoc", {**HARDENED, "user": "byoc"}),
        ("read-only only", {"read_only": True, "tmpfs": {"/tmp": ""}}),
    ],
)
def test_a_serving_worker_can_write_only_to_its_temporary_directories(harness, intruder_model, how, options,
                                                                       dump_logs_on_failure):  # fmt: skip
    image = build_image("test-intruder")
    with harness.serve(image, intruder_model, container_options=options) as endpoint:
        dump_logs_on_failure(endpoint)
        answer = endpoint.invoke(json.dumps({"write": TEMPORARY + ELSEWHERE}), "application/json")
        assert answer.status_code == 200, answer.text
        result = answer.json()
        # and the family's own predictions still work
        assert endpoint.invoke("1,0,0", "text/csv").status_code == 200
    writes = result["writes"]
    assert all(writes[path] == "written" for path in TEMPORARY), writes
    written = [path for path in ELSEWHERE if writes[path] == "written"]
    assert not written, f"{how}: a serving worker wrote to {written}"
    if options is None or options.get("user"):
        assert result["uid"] != 0  # the workers dropped to (or started as) the unprivileged user
        assert 0 not in result["groups"], result["groups"]  # and none of root's groups went with them
