"""A real registry for push tests: Debian's docker-registry with htpasswd auth on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests


@dataclass(frozen=True)
class Registry:
    address: str  # host:port
    username: str
    password: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_registry(workdir: Path, username: str = "pusher", password: str = "s3cret-pw") -> Iterator[Registry]:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (Debian: apt-get install -y docker-registry)")
    htpasswd = workdir / "htpasswd"
    line = subprocess.run(["htpasswd", "-Bbn", username, password], capture_output=True, text=True, check=True)
    htpasswd.write_text(line.stdout)
    port = _free_port()
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {workdir / 'storage'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
        f"auth: {{htpasswd: {{realm: byoc-test, path: {htpasswd}}}}}\n"
    )
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 20
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401:
                    break
            except requests.ConnectionError:
                pass
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError(f"docker-registry did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield Registry(f"127.0.0.1:{port}", username, password)
    finally:
        process.terminate()
        process.wait(10)
