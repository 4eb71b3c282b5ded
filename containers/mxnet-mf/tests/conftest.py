"""Fixtures of the mxnet-mf unit tests."""

import pytest
from mf_fixtures import make_model


@pytest.fixture
def mf_model_dir(tmp_path):
    make_model("mf").save(tmp_path)
    return tmp_path
