"""bench.soak's recovery judgement (no docker): a replacement killed while still loading is not a lost worker;
the kill recovers when the replacement of that replacement has loaded."""

import datetime

from bench.soak.__main__ import Kill, Run, recoveries

T0 = datetime.datetime(2026, 12, 4, 4, 0, 0, tzinfo=datetime.UTC).timestamp()


def loaded_line(seconds_after: float, container_pid: int) -> str:
    stamp = datetime.datetime.fromtimestamp(T0 + seconds_after, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{stamp} INFO [{container_pid}] byoc_runtime.serve: model loaded"


def run_with(kills: list[Kill], names: dict[int, int], lines: list[str], sigterm_at: float | None = None) -> Run:
    return Run(kills=kills, names=names, logs="\n".join(lines), sigterm_at=sigterm_at)


def test_a_replacement_killed_while_loading_chains_to_the_next_one():
    # worker 100 killed at 0 s, replaced by 101; 101 killed at 2 s before loading, replaced by 102, loaded at 5 s
    kills = [Kill(0.0, T0, 100, replaced_by=101), Kill(2.0, T0 + 2, 101, replaced_by=102)]
    run = run_with(kills, {101: 11, 102: 12}, [loaded_line(5.0, 12)])
    assert [round(r, 2) for r in recoveries(run)] == [5.0, 3.0]


def test_a_replacement_that_never_loads_is_still_a_failure():
    kills = [Kill(0.0, T0, 100, replaced_by=101)]
    assert recoveries(run_with(kills, {101: 11}, [])) == [None]
