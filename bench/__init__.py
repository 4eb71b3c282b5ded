"""Benchmarks: `python -m bench.<name>` from the repository root. Each prints a Markdown table and writes
bench/results/<name>.json with the machine it ran on."""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
# The runtime and the families import as they do inside the images.
_SOURCES = ["containers/base/src", "tests/families/linear/src"] + sorted(
    str(p.relative_to(_ROOT)) for p in _ROOT.glob("containers/*/src") if p.parent.name != "base"
)
for _path in (_ROOT / s for s in _SOURCES):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
