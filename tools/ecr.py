"""Amazon ECR for build.sh: create missing repositories, log docker in with a token from boto3.

    python -m tools.ecr --repositories byoc-mxnet-mf byoc-ncf-tf [--region R] [--account A]
prints the registry host (ACCOUNT.dkr.ecr.REGION.amazonaws.com) after `docker login` succeeded.
`aws ecr get-login` was removed from the AWS CLI v2; this is the boto3 equivalent.
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
from dataclasses import dataclass

import boto3


@dataclass(frozen=True)
class EcrCredentials:
    registry: str  # host name, no scheme
    username: str
    password: str


def ensure_repositories(client, names: list[str], account: str | None = None) -> list[str]:
    """Create the repositories that do not exist yet; returns the names created."""
    created = []
    for name in names:
        kwargs = {"repositoryName": name, **({"registryId": account} if account else {})}
        try:
            client.describe_repositories(repositoryNames=[name], **({"registryId": account} if account else {}))
        except client.exceptions.RepositoryNotFoundException:
            client.create_repository(**kwargs, imageScanningConfiguration={"scanOnPush": True})
            created.append(name)
    return created


def credentials(client, account: str | None = None) -> EcrCredentials:
    response = client.get_authorization_token(**({"registryIds": [account]} if account else {}))
    data = response["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    return EcrCredentials(data["proxyEndpoint"].removeprefix("https://").rstrip("/"), username, password)


def docker_login(creds: EcrCredentials) -> None:
    result = subprocess.run(
        ["docker", "login", "--username", creds.username, "--password-stdin", creds.registry],
        input=creds.password,
        text=True,
        capture_output=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker login to {creds.registry} failed: {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repositories", nargs="+", required=True)
    parser.add_argument("--region")
    parser.add_argument("--account")
    args = parser.parse_args(argv)
    try:
        client = boto3.client("ecr", region_name=args.region)
        created = ensure_repositories(client, args.repositories, args.account)
        for name in created:
            print(f"created ECR repository {name}", file=sys.stderr)
        creds = credentials(client, args.account)
        docker_login(creds)
    except Exception as err:  # noqa: BLE001 - one clear line for build.sh to show
        print(f"ECR: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(creds.registry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
