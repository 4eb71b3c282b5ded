import os

from byoc_runtime import cpu


def _topology(root, layout):
    """layout: {cpu: (package, core)}"""
    for number, (package, core) in layout.items():
        topology = root / f"cpu{number}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")


def _allowed():
    return sorted(os.sched_getaffinity(0))


def test_hyperthread_siblings_count_once(tmp_path):
    allowed = _allowed()
    _topology(tmp_path, {number: (0, number // 2) for number in allowed})
    expected = len({number // 2 for number in allowed})
    assert cpu.physical_cores(tmp_path, tmp_path / "none") == expected


def test_one_thread_per_core_counts_every_cpu(tmp_path):
    allowed = _allowed()
    _topology(tmp_path, {number: (0, number) for number in allowed})
    assert cpu.physical_cores(tmp_path, tmp_path / "none") == len(allowed)


def test_cgroup_quota_caps_the_count(tmp_path):
    allowed = _allowed()
    _topology(tmp_path, {number: (0, number) for number in allowed})
    (tmp_path / "cpu.max").write_text("100000 100000\n")
    assert cpu.physical_cores(tmp_path, tmp_path / "cpu.max") == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu.physical_cores(tmp_path, tmp_path / "cpu.max") == len(allowed)


def test_unreadable_topology_falls_back_to_logical_cpus(tmp_path):
    assert cpu.physical_cores(tmp_path / "missing", tmp_path / "none") == len(_allowed())


def test_user_setting_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu.openmp_environment() == {}
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu.openmp_environment() == {"OMP_NUM_THREADS": str(cpu.physical_cores())}


def test_mxnet_environment_one_cpu_host(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MXNET_ENGINE_TYPE", raising=False)
    assert cpu.mxnet_environment(num_gpus=0, hosts=1) == {
        "OMP_NUM_THREADS": str(cpu.physical_cores()),
        "MXNET_ENGINE_TYPE": "NaiveEngine",
    }


def test_mxnet_environment_leaves_gpus_several_hosts_and_user_settings_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MXNET_ENGINE_TYPE", raising=False)
    assert cpu.mxnet_environment(num_gpus=1, hosts=1) == {}
    assert "MXNET_ENGINE_TYPE" not in cpu.mxnet_environment(num_gpus=0, hosts=2)
    monkeypatch.setenv("MXNET_ENGINE_TYPE", "ThreadedEngine")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu.mxnet_environment(num_gpus=0, hosts=1) == {}


def test_apply_keeps_what_the_user_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("MXNET_ENGINE_TYPE", raising=False)
    cpu.apply({"OMP_NUM_THREADS": "8", "MXNET_ENGINE_TYPE": "NaiveEngine"})
    assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MXNET_ENGINE_TYPE"] == "NaiveEngine"


def test_mxnet_environment_for_a_fresh_environment_ignores_this_process(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MXNET_ENGINE_TYPE", "ThreadedEngine")
    assert cpu.mxnet_environment(num_gpus=0, hosts=1, environ={}) == {
        "OMP_NUM_THREADS": str(cpu.physical_cores()),
        "MXNET_ENGINE_TYPE": "NaiveEngine",
    }


def test_serving_workers_share_the_cores_out(monkeypatch):
    monkeypatch.setattr(cpu, "physical_cores", lambda: 8)
    assert cpu.serving_thread_environment(8, {}) == {"OMP_NUM_THREADS": "1"}
    assert cpu.serving_thread_environment(2, {}) == {"OMP_NUM_THREADS": "4"}
    assert cpu.serving_thread_environment(16, {}) == {"OMP_NUM_THREADS": "1"}
    assert cpu.serving_thread_environment(2, {"OMP_NUM_THREADS": "3"}) == {}
