"""byoc_runtime.checkpoints: numbered checkpoints, verified on resume, the newest intact one wins."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from byoc_runtime import checkpoints, metrics
from byoc_runtime.checkpoints import MANIFEST, CheckpointStore
from byoc_runtime.errors import TrainingError


@pytest.fixture(autouse=True)
def fresh_metrics(monkeypatch):
    monkeypatch.setattr(metrics, "_runtime_facts", {})


def save(store, step, size=64):
    with store.save(step, {"epoch": step}) as scratch:
        np.save(scratch / "weights.npy", np.full(size, step, dtype=np.float32))
        (scratch / "sub").mkdir()
        (scratch / "sub" / "state.json").write_text(json.dumps({"step": step}))


def load(checkpoint):
    return int(np.load(checkpoint.file("weights.npy"))[0])


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_save_writes_files_and_a_manifest_last(tmp_path):
    store = CheckpointStore(tmp_path, "model", keep=3)
    save(store, 1)
    manifest = json.loads((tmp_path / "model-000001" / MANIFEST).read_text())
    assert manifest["step"] == 1 and manifest["meta"] == {"epoch": 1}
    assert set(manifest["files"]) == {"weights.npy", "sub/state.json"}
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in manifest["files"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-000001"]


def test_resume_loads_the_newest(tmp_path):
    store = CheckpointStore(tmp_path, "model", keep=3)
    for step in (1, 2, 3):
        save(store, step)
    checkpoint, value = store.restore(load)
    assert checkpoint.step == 3 and value == 3 and checkpoint.meta == {"epoch": 3}
    assert metrics.runtime_facts() == {"checkpoints": {"model": {"resumed_from": 3}}}


def test_a_truncated_newest_file_falls_back_to_the_previous_and_says_so(tmp_path, caplog):
    store = CheckpointStore(tmp_path, "model", keep=3)
    for step in (1, 2, 3):
        save(store, step)
    truncate(tmp_path / "model-000003" / "weights.npy")
    with caplog.at_level(logging.WARNING, logger="byoc_runtime.checkpoints"):
        checkpoint, value = store.restore(load)
    assert checkpoint.step == 2 and value == 2
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "model-000003" in warning.getMessage() and "truncated" in warning.getMessage()
    skipped = metrics.runtime_facts()["checkpoints"]["model"]
    assert skipped["resumed_from"] == 2 and skipped["skipped"][0]["checkpoint"] == "model-000003"


def test_same_size_corruption_is_caught_by_the_hash(tmp_path, caplog):
    store = CheckpointStore(tmp_path, "model", keep=3)
    save(store, 1)
    save(store, 2)
    path = tmp_path / "model-000002" / "weights.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert store.restore(load)[0].step == 1
    assert "sha256" in caplog.text


def test_a_missing_file_is_skipped(tmp_path, caplog):
    store = CheckpointStore(tmp_path, "model", keep=3)
    save(store, 1)
    save(store, 2)
    (tmp_path / "model-000002" / "sub" / "state.json").unlink()
    with caplog.at_level(logging.WARNING):
        assert store.restore(load)[0].step == 1
    assert "sub/state.json is missing" in caplog.text


@pytest.mark.parametrize("manifest", ["{not json", '{"step": 2}', '{"step": 7, "files": {}}', ""])
def test_a_corrupt_manifest_is_skipped(tmp_path, caplog, manifest):
    store = CheckpointStore(tmp_path, "model", keep=3)
    save(store, 1)
    save(store, 2)
    (tmp_path / "model-000002" / MANIFEST).write_text(manifest)
    with caplog.at_level(logging.WARNING):
        assert store.restore(load)[0].step == 1
    assert "model-000002" in caplog.text and "MANIFEST.json is corrupt" in caplog.text


def test_a_checkpoint_without_manifest_is_an_unfinished_save(tmp_path, caplog):
    store = CheckpointStore(tmp_path, "model", keep=3)
    save(store, 1)
    save(store, 2)
    (tmp_path / "model-000002" / MANIFEST).unlink()
    with caplog.at_level(logging.WARNING):
        assert store.restore(load)[0].step == 1
    assert "no MANIFEST.json" in caplog.text


def test_all_corrupt_starts_fresh_with_a_warning(tmp_path, caplog):
    store = CheckpointStore(tmp_path, "model", keep=2)
    save(store, 1)
    save(store, 2)
    for step in (1, 2):
        truncate(tmp_path / f"model-00000{step}" / "weights.npy")
    with caplog.at_level(logging.WARNING):
        assert store.restore(load) is None
    assert "no intact checkpoint" in caplog.text and "starting from scratch" in caplog.text
    assert metrics.runtime_facts()["checkpoints"]["model"]["resumed_from"] is None


def test_an_empty_directory_is_a_fresh_start_without_noise(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert CheckpointStore(tmp_path / "none", "model").restore(load) is None
    assert caplog.text == "" and metrics.runtime_facts() == {}


def test_a_checkpoint_the_loader_refuses_is_skipped_but_a_user_error_is_raised(tmp_path, caplog):
    store = CheckpointStore(tmp_path, "model", keep=3)
    save(store, 1)
    save(store, 2)

    def picky(checkpoint):
        if checkpoint.step == 2:
            raise ValueError("shape mismatch")
        return checkpoint.step

    with caplog.at_level(logging.WARNING):
        assert store.restore(picky)[1] == 1
    assert "could not be loaded (ValueError: shape mismatch)" in caplog.text

    def refuses(_checkpoint):
        raise TrainingError("another network")

    with pytest.raises(TrainingError):
        store.restore(refuses)


def test_rotation_keeps_the_newest_and_drops_stale_newer_ones(tmp_path):
    store = CheckpointStore(tmp_path, "model", keep=2)
    for step in range(1, 6):
        save(store, step)
    assert store.steps() == [5, 4]
    save(store, 3)  # a job that resumed from 3 (4 and 5 were corrupt) and saves again: they are stale now
    assert store.steps() == [3]
    save(store, 3)  # the same step again (SIGTERM mid-epoch): replaced whole
    assert store.steps() == [3] and store.restore(load)[0].step == 3
    assert [p.name for p in tmp_path.iterdir()] == ["model-000003"]


def test_stores_share_a_directory_by_name(tmp_path):
    gmf, mlp = CheckpointStore(tmp_path, "gmf", keep=1), CheckpointStore(tmp_path, "mlp", keep=1)
    save(gmf, 4)
    save(mlp, 1)
    save(mlp, 2)
    assert gmf.steps() == [4] and mlp.steps() == [2]


def test_a_failed_save_leaves_the_previous_checkpoints(tmp_path):
    store = CheckpointStore(tmp_path, "model", keep=3)
    save(store, 1)
    with pytest.raises(RuntimeError), store.save(2) as scratch:
        (scratch / "weights.npy").write_bytes(b"half")
        raise RuntimeError("crash mid-save")
    assert store.steps() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["model-000001"]


def test_leftovers_of_a_crashed_save_are_ignored_and_cleaned(tmp_path):
    store = CheckpointStore(tmp_path, "model", keep=3)
    save(store, 1)
    (tmp_path / ".model-000002.partial").mkdir()
    (tmp_path / ".model-000002.partial" / "weights.npy").write_bytes(b"half")
    assert store.restore(load)[0].step == 1
    save(store, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-000001", "model-000002"]


def test_kept_count_from_the_environment(monkeypatch):
    monkeypatch.setenv(checkpoints.KEEP_VARIABLE, "2")
    assert CheckpointStore("/tmp/x", "model").keep == 2
    monkeypatch.setenv(checkpoints.KEEP_VARIABLE, "0")
    with pytest.raises(TrainingError, match="at least 1"):
        CheckpointStore("/tmp/x", "model")
    monkeypatch.delenv(checkpoints.KEEP_VARIABLE)
    assert CheckpointStore("/tmp/x", "model").keep == checkpoints.DEFAULT_KEEP
