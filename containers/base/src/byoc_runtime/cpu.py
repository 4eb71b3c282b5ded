"""How many CPU cores this process may really use: for sizing thread pools on ml.* instances and laptops.

MXNet sizes its OpenMP pool at half the logical CPUs on x86 unless OMP_NUM_THREADS is set, assuming two
hyperthreads per core; on a machine with one thread per core that leaves half of it idle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def physical_cores(sys_cpu: Path = SYS_CPU, cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Distinct physical cores among the CPUs this process may run on, capped by a cgroup v2 CPU quota
    (`docker run --cpus`). Falls back to the logical count where the topology is not readable."""
    cpus = sorted(os.sched_getaffinity(0))
    cores = set()
    for cpu in cpus:
        topology = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            cores.add(
                ((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip())
            )
        except OSError:
            cores = set(cpus)
            break
    count = max(len(cores), 1)
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def openmp_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """OMP_NUM_THREADS = physical cores, unless the user set it in `environ`: apply before the framework is
    imported. A benchmark passes {} to get what a job gets in a fresh container, whatever its own shell has."""
    if environ.get("OMP_NUM_THREADS"):
        return {}
    return {"OMP_NUM_THREADS": str(physical_cores())}


def serving_thread_environment(workers: int, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """OMP_NUM_THREADS for the serving workers: the cores shared out among them (one each by default, with one
    worker per core), unless the user set it. Each worker already serves its own requests in parallel with
    the others; a framework's OpenMP team of all the cores in every worker oversubscribes them, and a team
    member descheduled while the others spin at a barrier stretches one small forward pass to milliseconds
    (measured, gluon-cnn at 8 connections, 2 cores: one image's forward at 20 ms of CPU with one request
    thread per worker)."""
    if environ.get("OMP_NUM_THREADS"):
        return {}
    return {"OMP_NUM_THREADS": str(max(1, physical_cores() // max(1, workers)))}


def mxnet_environment(num_gpus: int, hosts: int, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """MXNet settings for training on CPUs, read at `import mxnet`: apply them before it (setdefault: a
    user's own settings win). On one host the naive engine runs each op in the calling thread, so the
    OpenMP team has the cores to itself; the threaded engine's worker competes with the Python thread and
    its OpenMP threads stall at their barriers. Measured on 2 cores: the gluon-cnn CNN 3,100 -> 4,600
    images/s, mxnet-mf about 12% more ratings/s. Several hosts keep the threaded engine (the kvstore's
    pushes and pulls overlap the compute there); GPUs are left alone."""
    if num_gpus:
        return {}
    settings = openmp_environment(environ)
    if hosts == 1 and not environ.get("MXNET_ENGINE_TYPE"):
        settings["MXNET_ENGINE_TYPE"] = "NaiveEngine"
    return settings


def apply(settings: dict[str, str]) -> None:
    """Set each variable the user has not set."""
    for name, value in settings.items():
        os.environ.setdefault(name, value)
