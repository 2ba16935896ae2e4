"""The load report's two capacity lines (``bench/load_submit.py``), recomputed by hand.

Why: under think time the throughput ratio only echoes what the phones offer, so the report
prints that ceiling and the CPU cost ratio; a wrong figure there would misstate capacity.
"""

from __future__ import annotations

from collections import Counter

import pytest

from bench.accounting import Accounting
from bench.load_submit import LoadResult
from bench.loadgen import Tally


def _result(**kw) -> LoadResult:
    tally = Tally(latencies=[0.01, 0.02], statuses=Counter({201: 600}),
                  accepted={f"c{i}": (i, "accept") for i in range(600)})
    cpu = {"app (gunicorn)": 8.0, "worker": 1.0, "MariaDB": 2.5, "Redis": 0.5,
           "phones + fake WeChat": 4.0, "total": 16.0}
    return LoadResult(tally, 6.0, 800.0, Accounting(accepted=600, stored_runs=600), cpu, **kw)


def test_cost_ratio_is_the_servers_cpu_per_healthz_over_its_cpu_per_run():
    result = _result(healthz_cpu_ms=2.4, offered_per_s=100.0)
    # the phones (the load's own client) and the total are left out: 8 + 1 + 2.5 + 0.5 = 12
    assert result.cost_ratio == pytest.approx(2.4 / 12.0)
    text = result.report(200, 4)
    assert "throughput 100.0 runs/s · healthz 800.0/s · ratio 0.12" in text
    assert "offered at most 100 runs/s (phones ÷ mean think): ratio ≤ 0.12 at this load" in text
    assert ("server CPU per request: /healthz 2.40 ms · accepted run 12.00 ms · "
            "cost ratio 0.20") in text


def test_without_wrk_or_think_time_the_capacity_lines_are_left_out():
    result = _result()
    assert result.cost_ratio is None
    text = result.report(200, 4)
    assert "cost ratio" not in text and "offered at most" not in text


def test_the_baseline_is_the_mean_of_the_windows_before_and_after_the_load():
    from bench.load_submit import _baseline

    # a machine 20 % slower after the load than before: the baseline sits between the two
    assert _baseline((500.0, 4.0), (400.0, 5.0)) == (450.0, 4.5)
    assert _baseline(None, None) == (None, None)  # no wrk: no baseline of its own
    assert _baseline((500.0, 4.0), None) == (None, None)
