import numpy as np
import pytest


@pytest.fixture
def linear_model_dir(tmp_path):
    """A model directory as the linear test family writes it: y = x @ [1, 2, 3] + 0.5."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    np.savez(model_dir / "model.npz", weights=np.array([1.0, 2.0, 3.0]), bias=np.float64(0.5))
    return model_dir
