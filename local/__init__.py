"""Run our images (or any BYOC image) offline: a faithful /opt/ml harness and SageMaker SDK local mode."""

import sys
from pathlib import Path

# The harness extracts archives with the runtime's own safe extraction.
_RUNTIME = str(Path(__file__).resolve().parents[1] / "containers/base/src")
if _RUNTIME not in sys.path:
    sys.path.insert(0, _RUNTIME)
