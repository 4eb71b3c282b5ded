"""The legacy-interface adapter's decisions (the end-to-end run is in tests/test_gluon_cnn.py)."""

from __future__ import annotations

from byoc_runtime.training_env import TrainingEnv
from gluon_cnn import legacy


def test_arguments_are_the_old_containers(opt_ml):
    opt_ml({"epochs": 2})
    arguments = legacy.legacy_arguments(TrainingEnv.load())
    assert arguments["hyperparameters"] == {"epochs": 2}
    assert arguments["hosts"] == ["algo-1"] and arguments["current_host"] == "algo-1"
    assert arguments["channel_input_dirs"]["train"].endswith("/input/data/train")
    assert {"num_gpus", "num_cpus", "model_dir", "output_data_dir", "input_data_config"} <= set(arguments)


def test_only_accepted_arguments_are_passed():
    def narrow(channel_input_dirs, hyperparameters): ...

    def wide(hyperparameters, **kwargs): ...

    arguments = {"channel_input_dirs": {}, "hyperparameters": {}, "hosts": []}
    assert set(legacy._accepted(narrow, arguments)) == {"channel_input_dirs", "hyperparameters"}
    assert legacy._accepted(wide, arguments) == arguments


def test_modern_scripts_are_recognised(tmp_path):
    modern, old = tmp_path / "modern.py", tmp_path / "old.py"
    modern.write_text("def train():\n    pass\n\nif __name__ == '__main__':\n    train()\n")
    old.write_text("def train(hyperparameters, **kwargs):\n    return None\n")
    assert legacy._is_modern(modern) and not legacy._is_modern(old)
