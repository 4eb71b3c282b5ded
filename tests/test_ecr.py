"""tools/ecr.py against moto's ECR (no AWS here): repositories created once, the token decoded."""

import boto3
import pytest

moto = pytest.importorskip("moto")

from tools import ecr  # noqa: E402


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        yield boto3.client("ecr", region_name="eu-west-1")


def test_missing_repositories_are_created_once(client):
    client.create_repository(repositoryName="byoc-ncf-tf")
    assert ecr.ensure_repositories(client, ["byoc-mxnet-mf", "byoc-ncf-tf"]) == ["byoc-mxnet-mf"]
    assert ecr.ensure_repositories(client, ["byoc-mxnet-mf", "byoc-ncf-tf"]) == []
    names = {r["repositoryName"] for r in client.describe_repositories()["repositories"]}
    assert names == {"byoc-mxnet-mf", "byoc-ncf-tf"}


def test_credentials_come_from_get_authorization_token(client):
    creds = ecr.credentials(client)
    assert creds.username == "AWS" and creds.password
    assert creds.registry.endswith(".dkr.ecr.eu-west-1.amazonaws.com") and "://" not in creds.registry


def test_cli_reports_failures_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:9")  # nothing listens there
    assert ecr.main(["--repositories", "x", "--region", "eu-west-1"]) == 1
    assert capsys.readouterr().err.startswith("ECR: ")
