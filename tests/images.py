"""Build (once per test session) and name the images under test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_built: dict[str, str] = {}


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def version() -> str:
    return (ROOT / "VERSION").read_text().strip()


def build_image(name: str, variant: str = "cpu", serve: bool = False) -> str:
    """./build.sh build NAME once per test session (docker's layer cache makes repeats cheap); returns the tag.
    serve=True: the family's serve-only image (--serve, CPU); else its full image only (--full)."""
    key = f"{name}-{variant}" + ("-serve" if serve else "")
    if key not in _built:
        args = [str(ROOT / "build.sh"), "build", name, "--serve" if serve else "--full"]
        args += ["--gpu"] if variant == "gpu" else []
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"build.sh build {name} failed:\n{result.stderr[-4000:]}")
        _built[key] = f"byoc-{name}:{version()}-{variant}" + ("-serve" if serve else "")
    return _built[key]
