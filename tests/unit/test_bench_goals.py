"""The bench's seconds goals scaled to the machine it runs on (tests/bench/bench.py): the verdict stays the goals'
own table; the scaled view must use the strictest of its reference runs and say which runs are within."""

from __future__ import annotations

import os
import sys

TESTS = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path[:0] = [TESTS, os.path.join(TESTS, "bench")]

import bench  # noqa: E402  pylint: disable=wrong-import-position


def _m(n, run, seconds, ok=True):
    return bench.Measure(run=run, n=n, seconds=seconds, ok=ok)


def test_scaled_goals_use_the_smallest_ratio_and_name_each_run():
    results = [_m(0, bench.FLOOR, 0.94), _m(3, bench.ADHOC, 3.21), _m(3, bench.B_LAUNCH, 0.78),  # ratios 2.0, 3.0, 2.0
               _m(3, bench.LAUNCH, 8.1), _m(3, bench.STATUS, 2.9), _m(100, bench.STATUS, 3.1),
               _m(3, bench.RERUN, 6.5, ok=False)]
    lines = bench.scaled_goals(results)
    assert lines[0].startswith("Seconds goals scaled to this machine, by a factor of 2.0 ")
    assert "  launch N=3: 4.0 s -> 8.0 s here; today N=3 8.1 s (above)" in lines
    assert "  ops status: 1.5 s -> 3.0 s here; today N=3 2.9 s (within), N=100 3.1 s (above)" in lines
    # A failed run is no figure; runs not measured are left out.
    assert not any("re-run" in line or "dns" in line or "cleanup" in line for line in lines)


def test_no_reference_run_no_scaled_goals():
    assert bench.scaled_goals([_m(3, bench.LAUNCH, 8.1), _m(0, bench.FLOOR, 1.0, ok=False)]) == []
