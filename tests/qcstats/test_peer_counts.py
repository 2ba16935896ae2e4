"""Who counts once, CV% of negative and zero means, and the bias sign (QC_SPEC §3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from qcwx.qcstats.peer import (
    LabMoments,
    algorithm_a,
    bias_pct,
    cv_pct,
    group_statistics,
    sdi,
    summarise_group,
    update_lab_moments,
)
from qcwx.qcstats.robust import algorithm_a as robust_algorithm_a

BASE_EXCESS = [-3.1, -2.9, -3.0, -3.2, -2.8]  # mmol/L: a QC level with a negative mean


def test_cv_of_a_negative_mean_is_positive():
    assert cv_pct(0.2, -4.0) == pytest.approx(5.0)
    moments = update_lab_moments(None, add=BASE_EXCESS)
    assert moments.mean < 0 and moments.cv == pytest.approx(
        100 * np.std(BASE_EXCESS, ddof=1) / 3.0, rel=1e-12)
    assert algorithm_a(BASE_EXCESS).cv > 0


def test_a_zero_mean_has_no_cv_not_inf_nor_rounding_residue():
    assert math.isnan(cv_pct(0.3, 0.0)) and math.isnan(LabMoments().cv)
    values = [-0.3, 0.1, 0.2]  # sums to 2.8e-17 in float64, not 0
    assert math.isnan(update_lab_moments(None, add=values).cv)
    out = cv_pct(np.array([0.2, 0.2, 0.0, math.nan]), np.array([-4.0, 1e-18, 0.0, 1.0]))
    assert out[0] == pytest.approx(5.0) and np.isnan(out[1:]).all()
    assert cv_pct(0.0, 5.0) == 0.0


def test_bias_sign_follows_the_sdi_for_negative_means():
    # A lab more negative than its group is below it: negative SDI and negative bias.
    assert sdi(-3.3, -3.0, 0.15) < 0 and bias_pct(-3.3, -3.0) == pytest.approx(-10.0)
    assert bias_pct(5.1, 5.0) == pytest.approx(2.0)  # positive means: the spec's formula


def test_group_statistics_on_negative_means_gives_positive_cvs_and_consistent_bias():
    rng = np.random.default_rng(3)
    rows = [{"level": 1, "lab": lab, "value": -3.0 - 0.1 * lab + rng.normal(0, 0.1)}
            for lab in range(6) for _ in range(5)]
    out = group_statistics(pd.DataFrame(rows), by=["level"])
    assert (out.labs["lab_cv"] > 0).all() and (out.groups["group_cv"] > 0).all()
    assert (np.sign(out.labs["bias_pct"]) == np.sign(out.labs["sdi"])).all()


def test_two_analysers_of_one_lab_are_two_points_but_one_lab():
    means, cvs, ns = [5.0, 5.1, 4.9, 5.05, 4.95], [2.0] * 5, [10] * 5
    assert summarise_group(means, cvs, ns).n_labs == 5
    counted = summarise_group(means, cvs, ns, lab_ids=[1, 1, 2, 3, 4])
    assert counted.n_labs == 4 and not counted.publishable
    assert counted.mean == summarise_group(means, cvs, ns).mean  # still five points
    with pytest.raises(ValueError, match="one lab per mean"):
        summarise_group(means, cvs, ns, lab_ids=[1, 2])


def test_group_statistics_counts_distinct_labs_when_given_systems():
    rows = [{"level": 1, "lab": lab, "ts": ts, "value": 5.0 + 0.01 * ts + 0.001 * k}
            for lab, ts in [(1, 1), (1, 2), (2, 3), (3, 4), (4, 5)] for k in range(5)]
    df = pd.DataFrame(rows)
    per_system = group_statistics(df, by=["level"], system="ts")
    assert len(per_system.labs) == 5  # each analyser is one point
    group = per_system.groups.iloc[0]
    assert group["n_labs"] == 4 and group["n_systems"] == 5 and not group["publishable"]
    assert group_statistics(df, by=["level"]).groups.iloc[0]["n_labs"] == 4  # per lab


def test_the_robust_module_is_the_one_peer_re_exports():
    assert robust_algorithm_a is algorithm_a
    r = algorithm_a([5.02, 5.10, 4.95, 5.05, 5.20, 4.98, 5.01, 5.08, 4.90, 6.10, 5.03, 4.99])
    assert (round(r.mean, 4), round(r.sd, 4)) == (5.0413, 0.1009)
