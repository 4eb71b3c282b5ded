"""byoc_runtime.atomic: whole files or none, and a full disk reported with the name of the file."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from byoc_runtime import atomic, failure, metrics
from byoc_runtime.paths import SageMakerPaths


def hidden(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_write_replaces_the_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.json"
    target.write_text("old")
    atomic.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert hidden(tmp_path) == []


def test_an_error_while_writing_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"the good one")
    with pytest.raises(RuntimeError), atomic.open_for_write(target) as out:
        out.write(b"half a")
        raise RuntimeError("power loss")
    assert target.read_bytes() == b"the good one"
    assert hidden(tmp_path) == []


def test_disk_full_names_the_final_file_and_cleans_up(tmp_path, monkeypatch):
    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    target = tmp_path / "model.npz"
    with pytest.raises(OSError) as raised:
        atomic.save_npz(target, w=np.arange(3))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    assert not target.exists() and hidden(tmp_path) == []


def test_save_npz_round_trips(tmp_path):
    atomic.save_npz(tmp_path / "a.npz", w=np.arange(4.0), name=np.array("x"))
    with np.load(tmp_path / "a.npz", allow_pickle=False) as saved:
        assert saved["w"].tolist() == [0, 1, 2, 3] and str(saved["name"]) == "x"


def test_staged_publishes_a_tree_of_framework_files(tmp_path):
    target = tmp_path / "model"
    with atomic.staged(target / "000000001") as scratch:
        (scratch / "variables").mkdir()
        (scratch / "saved_model.pb").write_bytes(b"pb")
        (scratch / "variables" / "variables.index").write_bytes(b"index")
        scratch_path = scratch
    assert (target / "000000001" / "saved_model.pb").read_bytes() == b"pb"
    assert (target / "000000001" / "variables" / "variables.index").read_bytes() == b"index"
    assert not scratch_path.exists()


def test_staged_publishes_nothing_when_the_framework_fails(tmp_path):
    with pytest.raises(ValueError), atomic.staged(tmp_path / "model") as scratch:
        (scratch / "half.params").write_bytes(b"x")
        raise ValueError("framework bug")
    assert not (tmp_path / "model").exists()


def test_a_framework_disk_full_error_becomes_enospc_naming_the_target(tmp_path):
    class MXNetError(Exception):
        pass

    target = tmp_path / "model"
    with pytest.raises(OSError) as raised, atomic.staged(target):
        raise MXNetError("[12:00:00] src/io/local_filesys.cc:209: Check failed: No space left on device")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)


def test_disk_full_reason_is_one_line_naming_the_file(tmp_path):
    err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/opt/ml/model/model.npz")
    try:
        try:
            raise err
        except OSError as inner:
            raise RuntimeError("saving the model failed") from inner
    except RuntimeError as outer:
        reason = failure.disk_full_reason(outer)
    assert reason.startswith("No space left on device while writing /opt/ml/model/model.npz")
    assert "\n" not in reason and "Traceback" not in reason
    quota = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/opt/ml/checkpoints/x")
    assert failure.disk_full_reason(quota).startswith("Disk quota exceeded while writing /opt/ml/checkpoints/x")
    assert failure.disk_full_reason(ValueError("bad value")) is None
    assert failure.disk_full_reason(OSError(errno.EACCES, "Permission denied", "/x")) is None


def test_the_failure_file_is_written_atomically(tmp_path):
    paths = SageMakerPaths(tmp_path)
    failure.write_failure("No space left on device while writing /opt/ml/model/model.npz", "detail", paths)
    assert paths.failure_file.read_text().splitlines()[0].startswith("No space left on device while writing")
    assert hidden(paths.output_dir) == []


def test_metrics_json_carries_what_the_runtime_noted(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics, "_runtime_facts", {})
    metrics.record_checkpoint("linear", {"resumed_from": 2})
    target = metrics.write_metrics({"train_mse": 0.5}, SageMakerPaths(tmp_path))
    written = json.loads(target.read_text())
    assert written == {"train_mse": 0.5, "checkpoints": {"linear": {"resumed_from": 2}}}
    assert hidden(target.parent) == []
