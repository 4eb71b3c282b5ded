"""Benchmarks: `python -m bench.<name>` from the repository root. Each prints a Markdown table and writes
bench/results/<name>.json with the machine it ran on."""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
# The runtime and the test family import as they do inside the images.
for _path in (_ROOT / "containers/base/src", _ROOT / "tests/families/linear/src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
