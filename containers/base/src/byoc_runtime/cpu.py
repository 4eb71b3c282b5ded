"""How many CPU cores this process may really use: for sizing thread pools on ml.* instances and laptops.

MXNet sizes its OpenMP pool at half the logical CPUs on x86 unless OMP_NUM_THREADS is set, assuming two
hyperthreads per core; on a machine with one thread per core that leaves half of it idle.
"""

from __future__ import annotations

import os
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


def openmp_environment() -> dict[str, str]:
    """OMP_NUM_THREADS = physical cores, unless the user set it: apply before the framework is imported."""
    if os.environ.get("OMP_NUM_THREADS"):
        return {}
    return {"OMP_NUM_THREADS": str(physical_cores())}
