"""Multi-host jobs fail fast (two containers of the /opt/ml harness on one docker network).

For every distributed family (mxnet-mf and gluon-cnn: dist_sync; fm: its dist_sync gradient sums; ncf-tf:
MultiWorkerMirroredStrategy): one host's container is killed mid-training and the survivor must exit non-zero
within 120 s with a failure file whose first line names the lost host (default timeouts: BYOC_PEER_TIMEOUT 30 s);
a host that never comes up (its container never starts) must fail the other within BYOC_STARTUP_TIMEOUT (set
to 20 s here; 300 s by default). Healthy 2-host jobs that finish and save once on the master are tested in each
family's own module (tests/test_<family>.py).
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from local.opt_ml import ChannelSpec
from tests.images import ROOT, build_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]
LOST_WITHIN = 120.0
STARTUP_TIMEOUT = 20
RECORDIO = "application/x-recordio-protobuf"


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """family -> (hyperparameters that train for minutes, channels)."""
    root = tmp_path_factory.mktemp("multi-host")
    from byoc_runtime.codecs import recordio_protobuf
    from fm_client import mnist
    from mxnet_mf import synthetic as mf_synthetic
    from ncf_tf import synthetic as ncf_synthetic

    ratings = mf_synthetic.generate(num_users=200, num_items=300, num_ratings=12000, rank=8, seed=7)
    ratings.write(root / "mf" / "u.data", "u.data")
    ncf_synthetic.write(ncf_synthetic.planted_ratings(n_users=200, n_items=300, seed=0), root / "ncf", "u.data")
    x, y = mnist.load_binary(mnist.SAMPLE_DIR, "train")
    (root / "fm").mkdir()
    (root / "fm" / "train.rec").write_bytes(recordio_protobuf.write_dense(x, y))
    sample = ROOT / "containers" / "gluon-cnn" / "sample" / "mnist"
    return {
        "mxnet-mf": ({"model": "mf", "num_factors": 16, "epochs": 2000}, {"train": ChannelSpec(root / "mf")}),
        "gluon-cnn": (
            {"network": "mlp", "epochs": 500, "log_interval": 0},
            {"train": ChannelSpec(sample)},
        ),
        "fm": (
            {"feature_dim": 784, "num_factors": 8, "predictor_type": "binary_classifier", "epochs": 2000,
             "mini_batch_size": 100},
            {"train": ChannelSpec(root / "fm", RECORDIO)},
        ),  # fmt: skip
        "ncf-tf": ({"epochs": 500, "pretrain": False, "batch_size": 128}, {"training": ChannelSpec(root / "ncf")}),
    }


def kill_when_training(victim: str, killed: dict) -> callable:
    """on_started hook: once a host logs its first metric (training is under way), SIGKILL the victim."""

    def hook(containers) -> None:
        def watch() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if any("#metric:" in c.logs().decode("utf-8", "replace") for c in containers):
                    break
                time.sleep(0.5)
            time.sleep(2)
            target = next(c for c in containers if c.name.endswith(victim))
            killed["at"] = time.time()
            target.kill()

        threading.Thread(target=watch, daemon=True).start()

    return hook


@pytest.mark.parametrize(
    "family, victim",
    [("mxnet-mf", "algo-2"), ("gluon-cnn", "algo-1"), ("fm", "algo-2"), ("ncf-tf", "algo-2")],
)
def test_killing_a_host_mid_training_fails_the_survivor_fast(harness, jobs, family, victim, dump_logs_on_failure):
    image = build_image(family)
    hyperparameters, channels = jobs[family]
    killed: dict = {}
    result = harness.train(
        image, hyperparameters, channels, instance_count=2, timeout=600, on_started=kill_when_training(victim, killed)
    )
    dump_logs_on_failure(result)
    survivor = next(h for h in result.hosts if h.host != victim)
    assert "at" in killed, "the victim was never killed (training never logged a metric?)"
    assert survivor.exit_code != 0
    seconds = survivor.finished_at - killed["at"]
    assert 0 < seconds < LOST_WITHIN, f"the survivor took {seconds:.0f} s to stop"
    first = survivor.failure.splitlines()[0]
    assert re.search(rf"\b{victim}\b", first) and "Traceback" not in first, first
    print(f"{family}: {victim} killed; {survivor.host} stopped {seconds:.1f} s later: {first}")


@pytest.mark.parametrize("family", ["mxnet-mf", "gluon-cnn", "fm", "ncf-tf"])
def test_a_scheduler_or_chief_that_never_comes_up_fails_the_job(harness, jobs, family, dump_logs_on_failure):
    image = build_image(family)
    hyperparameters, channels = jobs[family]
    started = time.time()
    result = harness.train(
        image,
        hyperparameters,
        channels,
        instance_count=2,
        timeout=300,
        absent_hosts=["algo-1"],  # hosts[0]: the ps-lite scheduler, TensorFlow's chief
        environment={"BYOC_STARTUP_TIMEOUT": str(STARTUP_TIMEOUT)},
    )
    dump_logs_on_failure(result)
    (survivor,) = result.hosts
    assert survivor.host == "algo-2" and survivor.exit_code != 0
    seconds = survivor.finished_at - started
    assert seconds < STARTUP_TIMEOUT + 30, f"{seconds:.0f} s"
    first = survivor.failure.splitlines()[0]
    assert first.startswith("Host algo-1 of the training cluster did not come up within 20 s"), first
    print(f"{family}: algo-1 never started; algo-2 stopped after {seconds:.1f} s: {first}")
