"""Run our images (or any BYOC image) offline: a faithful /opt/ml harness and SageMaker SDK local mode."""

import sys
from pathlib import Path

# The harness extracts archives with the runtime's own safe extraction; the demos generate their sample
# data with the families' own generators (containers/<family>/src).
_ROOT = Path(__file__).resolve().parents[1]
for _source in [_ROOT / "containers/base/src", *sorted(_ROOT.glob("containers/*/src"))]:
    if str(_source) not in sys.path:
        sys.path.append(str(_source))
