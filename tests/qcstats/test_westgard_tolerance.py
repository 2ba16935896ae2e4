"""Values typed exactly at a limit are beyond it (QC_SPEC 1.1: |z| >= k - 1e-9).

A grid of decimal means, SDs and values at every limit, z computed in float64 as the service
computes it, e.g. (4.3 - 4.0) / 0.1 = 2.9999999999999982: without the tolerance about half of
these were missed. Also the sign tests (|z| < 1e-9 counts as 0) and ``rejudge_start``.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import numpy as np
import pytest

from qcwx.qcstats.westgard import MAX_LOOKBACK, TOLERANCE, evaluate, rejudge_start, rules_fired

MEANS = ["4.0", "5.3", "0.7", "123.4", "1.05", "47", "0.013", "256.8"]
SDS = ["0.1", "0.07", "0.3", "2.1", "0.01", "3", "0.003", "0.17"]
LIMITS = {"1-2s": "2", "1-2.5s": "2.5", "1-3s": "3", "1-3.5s": "3.5"}


def typed(mean: str, sd: str, k: str, sign: int) -> float:
    """Return the value a technician types at mean ± k·SD (exact decimal, then float)."""
    return float(Decimal(mean) + sign * Decimal(k) * Decimal(sd))


def z_of(value: float, mean: str, sd: str) -> float:
    return (value - float(mean)) / float(sd)


GRID = list(itertools.product(MEANS, SDS, (1, -1)))


@pytest.mark.parametrize("code,k", LIMITS.items())
def test_one_result_exactly_at_every_limit_fires(code, k):
    missed = [(m, s, sign) for m, s, sign in GRID
              if code not in rules_fired([z_of(typed(m, s, k, sign), m, s)], [code])[0]]
    assert missed == []


@pytest.mark.parametrize("code,k", LIMITS.items())
def test_one_result_a_last_digit_inside_the_limit_does_not_fire(code, k):
    fired = []
    for m, s, sign in GRID:
        step = Decimal(s) / 100  # well inside: one hundredth of an SD
        value = float(Decimal(m) + sign * (Decimal(k) * Decimal(s) - step))
        if rules_fired([z_of(value, m, s)], [code])[0]:
            fired.append((m, s, sign))
    assert fired == []


def test_the_published_float_case_is_a_1_3s_reject():
    z = (4.3 - 4.0) / 0.1
    assert z < 3  # 2.9999999999999982
    assert evaluate([[z]], {"1-3s": "reject"})[0].status == "reject"


@pytest.mark.parametrize("mean,sd", list(itertools.product(MEANS, SDS)))
def test_multi_result_rules_at_their_exact_limits(mean, sd):
    at = {k: z_of(typed(mean, sd, k, 1), mean, sd) for k in ("1", "2")}
    low = {k: z_of(typed(mean, sd, k, -1), mean, sd) for k in ("1", "2")}
    assert "2-2s" in rules_fired([[at["2"], at["2"]]], ["2-2s"])[0]  # within run, 2 levels
    assert "2-2s" in rules_fired([[low["2"]], [low["2"]]], ["2-2s"])[1]  # across runs
    assert "R-4s" in rules_fired([[at["2"], low["2"]]], ["R-4s"])[0]
    assert "2of3-2s" in rules_fired([[at["2"], 0.0, at["2"]]], ["2of3-2s"])[0]
    assert "3-1s" in rules_fired([[at["1"]], [at["1"]], [at["1"]]], ["3-1s"])[2]
    assert "4-1s" in rules_fired([[low["1"]]] * 4, ["4-1s"])[3]


def test_a_result_within_the_tolerance_of_the_mean_breaks_an_n_x_run():
    z = [0.5] * 5 + [TOLERANCE / 2] + [0.5] * 5
    assert not any("6x" in s for s in rules_fired(np.array(z), ["6x"]))
    assert "6x" in rules_fired(np.array([0.5] * 6), ["6x"])[5]


def test_rejudge_start_covers_every_later_run_not_only_the_first_and_the_newest():
    nan = np.nan
    z = np.full((40, 2), 0.1)
    z[:, 1] = nan
    z[[0, 1, 14], 1] = [2.2, 0.3, 2.3]  # a sparse level
    assert rejudge_start(z, 13) == 0  # run 14 needs the sparse level's results at runs 0, 1
    dense = np.full((60, 1), 0.1)
    assert rejudge_start(dense, 50) == 50 - (MAX_LOOKBACK - 1)
    assert rejudge_start(dense, 5) == 0


def test_rejudge_start_rejects_an_index_outside_the_rows():
    with pytest.raises(ValueError):
        rejudge_start(np.zeros((3, 1)), 4)
