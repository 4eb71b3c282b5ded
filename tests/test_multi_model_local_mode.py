"""The SageMaker SDK's MultiDataModel in local mode against our image: models under an S3 prefix (moto's S3
server stands in for S3, which local mode downloads the prefix from), deploy, predict with target_model=.
Local mode downloads the prefix once, at deployment: models added to it later are not seen (SageMaker's
endpoint would load them)."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from moto import server as moto_server  # requirements-dev.txt: moto[server]

from tests.images import build_image

pytestmark = pytest.mark.docker


def archive(bias: float) -> bytes:
    """A linear-family model.tar.gz whose answer to [0, 0, 0] is `bias`."""
    arrays = io.BytesIO()
    np.savez(arrays, weights=np.array([1.0, 2.0, 3.0]), bias=np.float64(bias))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.npz")
        info.size, info.mode = len(arrays.getvalue()), 0o644
        tar.addfile(info, io.BytesIO(arrays.getvalue()))
    return out.getvalue()


@pytest.fixture
def s3(monkeypatch):
    from local.sdk import _free_port

    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    import boto3

    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="tenants")
    yield client
    server.stop()


def test_multidatamodel_in_local_mode_predicts_with_target_model(s3):
    from local.sdk import local_run

    for tenant in range(3):
        s3.put_object(Bucket="tenants", Key=f"models/tenant-{tenant}.tar.gz", Body=archive(float(tenant)))
    with local_run(build_image("test-linear")) as run:
        run.deploy_multi_model("s3://tenants/models/")
        listed = sorted(run.model.list_models())
        assert listed == [f"tenant-{t}.tar.gz" for t in range(3)]
        for tenant in (2, 0, 1, 2):
            answer = run.predict("0,0,0", content_type="text/csv", target_model=f"tenant-{tenant}.tar.gz")
            assert answer["predictions"][0]["score"] == pytest.approx(tenant)
