"""The `train` entry as a process, against a /opt/ml tree in a temp dir (SAGEMAKER_BASE_DIR)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from byoc_runtime.checkpoints import CheckpointStore

ROOT = Path(__file__).resolve().parents[3]
PYTHONPATH = os.pathsep.join([str(ROOT / "containers/base/src"), str(ROOT / "tests/families/linear/src")])


def job(tmp_path, hyperparameters=None, channels=("train",)):
    base = tmp_path / "opt_ml"
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(
        json.dumps({k: json.dumps(v) for k, v in (hyperparameters or {}).items()})
    )
    (config / "inputdataconfig.json").write_text(json.dumps({c: {"ContentType": "text/csv"} for c in channels}))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    for channel in channels:
        (base / "input" / "data" / channel).mkdir(parents=True)
        np.savetxt(base / "input" / "data" / channel / "data.csv", np.c_[x @ [1, 2, 3] + 0.5, x], delimiter=",")
    return base


def train(base, extra_env=None, wait=True):
    env = {
        **os.environ,
        "SAGEMAKER_BASE_DIR": str(base),
        "PYTHONPATH": PYTHONPATH,
        "BYOC_TRAIN": "linear_family.train:train",
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "byoc_runtime.train"]
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_family_trainer_writes_the_model_and_metrics(tmp_path):
    base = job(tmp_path, {"l2": 0.0}, channels=("train", "test"))
    process = train(base)
    assert process.returncode == 0
    assert (base / "model" / "model.npz").exists()
    metrics = json.loads((base / "output" / "data" / "metrics.json").read_text())
    assert metrics["test_mse"] < 1e-12
    assert not (base / "output" / "failure").exists()


def test_bad_hyperparameter_writes_failure_and_exits_non_zero(tmp_path):
    base = job(tmp_path, {"l2": "abc"})
    process = train(base)
    assert process.returncode != 0
    failure = (base / "output" / "failure").read_text()
    assert failure.splitlines()[0] == "Hyperparameter 'l2' is invalid: expected a number, got 'abc'"


def test_missing_channel_failure(tmp_path):
    base = job(tmp_path, {}, channels=("validation",))
    assert train(base).returncode != 0
    assert "Channel 'train' is required" in (base / "output" / "failure").read_text()


def test_no_trainer_and_no_script_is_explained(tmp_path):
    base = job(tmp_path)
    assert train(base, {"BYOC_TRAIN": ""}).returncode != 0
    assert "SAGEMAKER_PROGRAM" in (base / "output" / "failure").read_text()


SCRIPT = """
import argparse, json, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
parser.add_argument("--optimizer")
args = parser.parse_args()
out = {"args": vars(args), "model_dir": os.environ["SM_MODEL_DIR"], "hps": json.loads(os.environ["SM_HPS"]),
       "channel": os.environ["SM_CHANNEL_TRAIN"], "cwd": os.getcwd()}
with open(os.path.join(os.environ["SM_MODEL_DIR"], "out.json"), "w") as f:
    json.dump(out, f)
if args.epochs == 13:
    print("ValueError: unlucky number of epochs", file=sys.stderr)
    sys.exit(3)
"""


def script_job(tmp_path, epochs):
    code = tmp_path / "code"
    code.mkdir()
    (code / "entry.py").write_text(SCRIPT)
    base = job(
        tmp_path,
        {
            "epochs": epochs,
            "optimizer": "adam",
            "sagemaker_program": "entry.py",
            "sagemaker_submit_directory": f"file://{code}",
        },
    )
    (base / "model").mkdir()
    return base, code


def test_script_mode_runs_the_user_script_with_args_and_sm_env(tmp_path):
    base, code = script_job(tmp_path, 3)
    process = train(base, {"BYOC_TRAIN": ""})
    assert process.returncode == 0, process.stderr
    out = json.loads((base / "model" / "out.json").read_text())
    assert out["args"] == {"epochs": 3, "optimizer": "adam"}
    assert out["hps"] == {"epochs": 3, "optimizer": "adam"}
    assert out["model_dir"] == str(base / "model") and out["cwd"] == str(code)


def test_script_mode_from_a_sourcedir_tarball(tmp_path):
    from byoc_runtime.archive import create_archive

    base, code = script_job(tmp_path, 4)
    tarball = create_archive(code, tmp_path / "sourcedir.tar.gz")
    hps = json.loads((base / "input/config/hyperparameters.json").read_text())
    hps["sagemaker_submit_directory"] = json.dumps(str(tarball))
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hps))
    process = train(base, {"BYOC_TRAIN": ""})
    assert process.returncode == 0, process.stderr
    assert json.loads((base / "model" / "out.json").read_text())["cwd"] == str(base / "code")


def test_script_failure_reports_exit_code_and_last_error_line(tmp_path):
    base, _ = script_job(tmp_path, 13)
    process = train(base, {"BYOC_TRAIN": ""})
    assert process.returncode == 3
    first = (base / "output" / "failure").read_text().splitlines()[0]
    assert first == "the training script 'entry.py' exited with code 3: ValueError: unlucky number of epochs"


def test_sigterm_is_forwarded_and_the_trainer_checkpoints(tmp_path):
    base = job(tmp_path, {"epochs": 1000, "epoch_seconds": 0.05})
    process = train(base, wait=False)
    store = CheckpointStore(base / "checkpoints", "linear")
    deadline = time.time() + 20
    while not store.steps() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    epoch = store.latest().step
    assert 0 < epoch < 1000
    assert "stopped by SIGTERM" in (base / "output" / "failure").read_text()
    # Restart (a new spot instance): resumes from the checkpoint and finishes.
    (base / "output" / "failure").unlink()
    hps = {"epochs": json.dumps(epoch + 3)}
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hps))
    resumed = train(base)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from checkpoint at epoch {epoch}" in resumed.stdout
    assert store.latest().step == epoch + 3


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_sigterm_reaches_a_script_that_traps_it(tmp_path, sig):
    code = tmp_path / "code"
    code.mkdir()
    (code / "trap.py").write_text(
        "import os, signal, sys, time\n"
        "def stop(*_):\n"
        "    open(os.path.join(os.environ['SM_MODEL_DIR'], 'stopped'), 'w').write('yes')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "open(os.path.join(os.environ['SM_MODEL_DIR'], 'started'), 'w').write('yes')\n"
        "time.sleep(60)\n"
    )
    base = job(tmp_path, {"sagemaker_program": "trap.py", "sagemaker_submit_directory": str(code)})
    (base / "model").mkdir()
    process = train(base, {"BYOC_TRAIN": ""}, wait=False)
    deadline = time.time() + 20
    while not (base / "model" / "started").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(sig)
    process.communicate(timeout=30)
    assert (base / "model" / "stopped").read_text() == "yes"


def test_help_lists_the_familys_hyperparameters():
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "BYOC_TRAIN": "linear_family.train:train"}
    result = subprocess.run(
        [sys.executable, "-m", "byoc_runtime.train", "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "| l2 | float | 0.0 | [0.0, ] | ridge penalty |" in result.stdout
