import json
import sys
from pathlib import Path

import pytest

from byoc_runtime.errors import TrainingError
from byoc_runtime.paths import SageMakerPaths
from byoc_runtime.training_env import TrainingEnv

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import job_tree  # noqa: E402

GOLDEN = json.loads((Path(__file__).parent / "golden" / "toolkit_env.json").read_text())


def test_sm_environment_matches_the_sagemaker_training_toolkit(tmp_path, monkeypatch):
    """Every SM_* variable the toolkit exports, with the same value, for the same job (golden file)."""
    base = Path("/tmp/byoc-golden-opt-ml")  # the golden file's paths
    job_tree.write(base)
    monkeypatch.delenv("SAGEMAKER_PROGRAM", raising=False)
    monkeypatch.delenv("SAGEMAKER_SUBMIT_DIRECTORY", raising=False)
    ours = TrainingEnv.load(SageMakerPaths(base)).sm_environment()
    expected = GOLDEN["env"]
    missing = sorted(set(expected) - set(ours))
    assert not missing, f"variables the toolkit exports and we do not: {missing}"
    different = {k: (ours[k], v) for k, v in expected.items() if ours[k] != v}
    assert not different


def test_hyperparameters_decoded_and_framework_keys_split(tmp_path):
    env = TrainingEnv.load(SageMakerPaths(job_tree.write(tmp_path)))
    assert env.hyperparameters == {
        "epochs": 10,
        "learning_rate": 0.05,
        "optimizer": "adam",
        "layers": [64, 32],
        "plain": "hello",
    }
    assert env.framework_params["sagemaker_parameter_server_enabled"] is True
    assert env.program == "train.py"
    assert env.hosts == ["algo-1", "algo-2"] and env.current_host == "algo-2" and not env.is_master
    assert env.network_interface_name == "eth1"
    assert env.channels["test"].is_pipe and env.channels["test"].pipe_path(3).name == "test_3"
    assert env.channels["train"].content_type == "text/csv"
    assert env.user_args() == [
        "--epochs",
        "10",
        "--layers",
        "[64, 32]",
        "--learning_rate",
        "0.05",
        "--optimizer",
        "adam",
        "--plain",
        "hello",
    ]


def test_defaults_outside_sagemaker(tmp_path):
    env = TrainingEnv.load(SageMakerPaths(tmp_path))
    assert env.hosts == ["algo-1"] and env.is_master
    assert env.checkpoint_dir == tmp_path / "checkpoints"


def test_checkpoint_config(tmp_path):
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "checkpointconfig.json").write_text('{"LocalPath": "/ckpt", "S3Uri": "s3://b/k"}')
    env = TrainingEnv.load(SageMakerPaths(tmp_path))
    assert str(env.checkpoint_dir) == "/ckpt" and env.checkpoint_s3_uri == "s3://b/k"


def test_missing_required_channel_names_what_was_given(tmp_path):
    env = TrainingEnv.load(SageMakerPaths(job_tree.write(tmp_path)))
    with pytest.raises(TrainingError, match=r"Channel 'validation' is required.*test, train"):
        env.channel("validation")
    assert env.channel("validation", required=False) is None


def test_broken_config_json_is_a_readable_error(tmp_path):
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text("{not json")
    with pytest.raises(TrainingError, match="hyperparameters.json is not valid JSON"):
        TrainingEnv.load(SageMakerPaths(tmp_path))
