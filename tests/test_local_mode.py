"""SageMaker SDK local mode against our images: fit -> deploy -> predict -> batch transform, and 2 hosts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.images import build_image

pytestmark = pytest.mark.docker
WEIGHTS = np.array([1.0, 2.0, 3.0])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("local-mode-data")
    x = np.random.default_rng(0).normal(size=(200, 3))
    np.savetxt(d / "train.csv", np.c_[x @ WEIGHTS + 0.5, x], delimiter=",")
    np.savetxt(d / "batch.csv", x[:25], delimiter=",")
    return d, x


def test_fit_deploy_predict_transform(data):
    from local.sdk import local_run

    d, x = data
    with local_run(build_image("test-linear")) as run:
        model_data = run.fit({"train": (d / "train.csv", "text/csv")}, {"l2": 0.0})
        assert model_data.startswith("file://") and model_data.endswith("model.tar.gz")
        run.deploy(model_data)
        assert run.predict({"instances": [[1, 0, 0]]})["predictions"][0]["score"] == pytest.approx(1.5)
        csv = run.predict("0,0,1", content_type="text/csv")
        assert csv["predictions"][0]["score"] == pytest.approx(3.5)
        out = run.transform(d / "batch.csv", content_type="text/csv", accept="application/jsonlines")
        scores = [json.loads(line)["score"] for line in out.read_text().splitlines() if line.strip()]
        assert np.allclose(scores, x[:25] @ WEIGHTS + 0.5)
    assert not run.workdir.exists(), "temp dirs are removed"


def test_two_hosts_see_the_right_resourceconfig(data, tmp_path):
    """instance_count=2: both containers run, each with its own current_host and the same hosts list."""
    from local.sdk import local_run

    d, _ = data
    code = tmp_path / "code"
    code.mkdir()
    (code / "show.py").write_text(
        "import json, os\n"
        "config = json.load(open('/opt/ml/input/config/resourceconfig.json'))\n"
        "name = os.path.join(os.environ['SM_OUTPUT_DATA_DIR'], config['current_host'] + '.json')\n"
        "json.dump(config, open(name, 'w'))\n"
        "open(os.path.join(os.environ['SM_MODEL_DIR'], 'model-' + config['current_host']), 'w').write('x')\n"
    )
    with local_run(build_image("test-linear")) as run:
        run.fit({"train": d / "train.csv"}, {}, instance_count=2, entry_point="show.py", source_dir=code)
        output = run.workdir / "output" / "output.tar.gz"
        import tarfile

        with tarfile.open(output) as tar:
            names = sorted(n for n in tar.getnames() if n.endswith(".json"))
            configs = [json.load(tar.extractfile(n)) for n in names]
    assert len(configs) == 2
    hosts = configs[0]["hosts"]
    assert len(hosts) == 2 and configs[1]["hosts"] == hosts
    assert sorted(c["current_host"] for c in configs) == sorted(hosts)
    assert all(c["network_interface_name"] == "eth0" for c in configs)


def test_a_failing_step_still_cleans_up(data):
    from local.sdk import local_run

    d, _ = data
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises a bare RuntimeError/ValueError
        with local_run(build_image("test-linear")) as run:
            run.fit({"train": (d / "train.csv", "text/csv")}, {"l2": "not-a-number"})
    assert not run.workdir.exists()
    import docker

    left = [
        c.name
        for c in docker.from_env().containers.list(all=True)
        if c.labels.get("com.docker.compose.project.working_dir", "").startswith(str(run.workdir))
    ]
    assert not left, f"local mode left containers behind: {left}"


@pytest.mark.parametrize("family", __import__("local.demo", fromlist=["x"]).available_families())
def test_every_family_demo_in_local_mode(family):
    """The main job's path for each family: fit -> deploy -> predict (-> batch transform) in local mode."""
    from local.demo import run_demo
    from tests.images import version

    build_image(family.replace("_", "-"))
    report = run_demo(family, version())
    assert report["predictions"] and all(p["answer"] for p in report["predictions"])
    assert "error" not in json.dumps(report["predictions"]).lower()
    if "transform" in report:
        assert report["transform"]["lines"] > 0
