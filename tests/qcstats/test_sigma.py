"""Performance metrics: total error, sigma, TEa at a concentration, decision chart, MU."""

from __future__ import annotations

import math

import pytest

from qcwx.qcstats.sigma import (
    decision_chart_lines,
    measurement_uncertainty,
    sigma_metric,
    tea_at_concentration,
    total_error,
)
from qcwx.qcstats.specs import Tea, get_spec


def test_glucose_worked_example_total_error_and_sigma():
    assert total_error(bias=1.5, cv=1.8) == pytest.approx(4.47, abs=1e-12)
    assert round(sigma_metric(tea=7.0, bias=1.5, cv=1.8), 2) == 3.06


def test_negative_bias_counts_by_magnitude():
    assert total_error(-1.5, 1.8) == total_error(1.5, 1.8)
    assert sigma_metric(7.0, -1.5, 1.8) == sigma_metric(7.0, 1.5, 1.8)


@pytest.mark.parametrize("k, expected", [(1.65, 4.47), (1.96, 5.028), (2.0, 5.1), (2, 5.1)])
def test_total_error_factor_is_configurable(k, expected):
    assert total_error(1.5, 1.8, k=k) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("call", [
    lambda: total_error(1.5, 1.8, k=3.0), lambda: total_error(1.5, -0.1),
    lambda: total_error(float("nan"), 1.0), lambda: sigma_metric(7.0, 1.5, 0.0),
    lambda: sigma_metric(0.0, 1.5, 1.0), lambda: sigma_metric(7.0, math.inf, 1.0),
])
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_two_tier_tea_switches_at_exactly_the_threshold():
    glu = get_spec("GLU").tea  # 0.21 mmol/L (≤3); 7%
    at = tea_at_concentration(glu, 3.0)
    assert (at.tier, at.absolute) == ("absolute", 0.21)
    assert at.pct == pytest.approx(7.0)
    above = tea_at_concentration(glu, math.nextafter(3.0, 4.0))
    assert (above.tier, above.pct) == ("percent", 7.0)
    assert above.absolute == pytest.approx(0.21)
    low = tea_at_concentration(glu, 2.0)
    assert (low.tier, low.absolute, low.pct) == ("absolute", 0.21, pytest.approx(10.5))
    high = tea_at_concentration(glu, 10.0)
    assert (high.pct, high.absolute) == (7.0, pytest.approx(0.7))


def test_creatinine_two_tier_in_umol_per_litre():
    crea = get_spec("CREA").tea  # 6 µmol/L (≤50); 12%
    assert tea_at_concentration(crea, 50.0).pct == pytest.approx(12.0)
    assert tea_at_concentration(crea, 40.0).pct == pytest.approx(15.0)
    assert tea_at_concentration(crea, 100.0).absolute == pytest.approx(12.0)


def test_percentage_only_tea_applies_everywhere():
    t = tea_at_concentration(Tea(4.0), 140.0)
    assert (t.tier, t.pct, t.absolute) == ("percent", 4.0, pytest.approx(5.6))
    with pytest.raises(ValueError):
        tea_at_concentration(Tea(4.0), 0.0)


def test_decision_chart_lines_for_m_2_to_6():
    lines = decision_chart_lines(7.0)
    assert [line.m for line in lines] == [2, 3, 4, 5, 6]
    assert [line.label for line in lines] == ["2σ", "3σ", "4σ", "5σ", "6σ"]
    for line in lines:
        (x0, y0), (x1, y1) = line.points
        assert (x0, y0, y1) == (0.0, 7.0, 0.0)
        assert x1 == pytest.approx(7.0 / line.m)
        # every point on the line has sigma == m
        cv = x1 / 2
        assert sigma_metric(7.0, 7.0 - line.m * cv, cv) == pytest.approx(line.m)
    with pytest.raises(ValueError):
        decision_chart_lines(-1.0)


def test_measurement_uncertainty_combines_imprecision_and_rms_bias():
    mu = measurement_uncertainty(3.0, [4.0, -4.0, 4.0])
    assert (mu.u_rw, mu.u_bias, mu.u_c, mu.expanded, mu.k, mu.n_bias) == (
        3.0, 4.0, 5.0, 10.0, 2.0, 3)
    mu = measurement_uncertainty(1.8, [1.0, 2.0])
    assert mu.u_bias == pytest.approx(math.sqrt(2.5))
    assert mu.expanded == pytest.approx(2 * math.sqrt(1.8**2 + 2.5))
    with pytest.raises(ValueError):
        measurement_uncertainty(1.0, [])
    with pytest.raises(ValueError):
        measurement_uncertainty(-1.0, [1.0])
