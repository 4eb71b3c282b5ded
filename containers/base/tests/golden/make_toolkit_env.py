"""Regenerate toolkit_env.json: the SM_* variables sagemaker-training exports for job_tree.py's job.

Run with a Python that has sagemaker-training installed (it is not a test dependency):
    python containers/base/tests/golden/make_toolkit_env.py
The base dir is a fixed path so the paths in the golden file are stable.
"""

import json
import os
import shutil
import sys
from pathlib import Path

BASE = Path("/tmp/byoc-golden-opt-ml")
sys.path.insert(0, str(Path(__file__).parent))
os.environ["SAGEMAKER_BASE_DIR"] = str(BASE)

import job_tree  # noqa: E402

shutil.rmtree(BASE, ignore_errors=True)
job_tree.write(BASE)

from importlib.metadata import version  # noqa: E402

from sagemaker_training import environment  # noqa: E402

env = environment.Environment().to_env_vars()
env = {k: v for k, v in env.items() if k not in ("SM_TRAINING_ENV", "SM_NUM_CPUS", "SM_NUM_GPUS")}
out = Path(__file__).with_name("toolkit_env.json")
out.write_text(json.dumps({"sagemaker_training": version("sagemaker-training"), "env": env}, indent=1, sort_keys=True))
print(f"wrote {out} ({len(env)} variables)")
