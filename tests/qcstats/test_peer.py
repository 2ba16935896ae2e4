"""Peer-group statistics: Algorithm A, bands, ranks, grades, vectorised group statistics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qcwx.qcstats.peer import (
    CVR_BANDS,
    SDI_BANDS,
    LabMoments,
    algorithm_a,
    algorithm_a_groups,
    bias_pct,
    choose_group_level,
    cvr,
    cvr_band,
    grade,
    grade_performance,
    group_cv,
    group_statistics,
    iterative_3sd,
    lab_overall_grade,
    nccl_pass,
    publishable,
    rank_in_group,
    sdi,
    sdi_band,
    summarise_group,
    update_lab_moments,
)

ISO_X = [5.02, 5.10, 4.95, 5.05, 5.20, 4.98, 5.01, 5.08, 4.90, 6.10, 5.03, 4.99]


def naive_algorithm_a(x):
    """Transcribe ISO 13528 C.3.1 / QC_SPEC §3 literally (pairwise numpy sums)."""
    x = np.asarray(x, dtype=float)
    xs = np.median(x)
    ss = 1.483 * np.median(np.abs(x - xs))
    if ss == 0:  # MAD = 0: nothing to winsorise towards, classical SD
        return xs, x.std(ddof=1), 0
    it = 0
    while it < 1000:
        it += 1
        d = 1.5 * ss
        w = np.clip(x, xs - d, xs + d)
        nx, ns = w.mean(), 1.134 * w.std(ddof=1)
        tol = 1e-10 * max(1.0, abs(nx))
        done = abs(nx - xs) < tol and abs(ns - ss) < tol
        xs, ss = nx, ns
        if done:
            break
    return xs, (x.std(ddof=1) if ss == 0 else ss), it


# --------------------------------------------------------------------------- Algorithm A


def test_algorithm_a_reproduces_iso_13528_example():
    r = algorithm_a(ISO_X)
    assert round(r.mean, 4) == 5.0413
    assert round(r.sd, 4) == 0.1009
    assert (r.n, r.flagged, r.converged, r.method) == (12, False, True, "algorithm_a")
    assert r.iterations > 1


def test_iso_example_classical_statistics_differ_from_robust():
    assert round(float(np.mean(ISO_X)), 4) == 5.1175
    assert round(float(np.std(ISO_X, ddof=1)), 4) == 0.3188


def test_algorithm_a_is_order_independent():
    assert algorithm_a(ISO_X) == algorithm_a(ISO_X[::-1])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=2, max_size=60))
def test_algorithm_a_matches_literal_transcription(values):
    r = algorithm_a(values)
    mean, sd, iterations = naive_algorithm_a(values)
    scale = max(1.0, abs(mean), float(np.ptp(values)))
    assert r.mean == pytest.approx(mean, abs=1e-9 * scale)
    assert r.sd == pytest.approx(sd, abs=1e-9 * scale)
    assert abs(r.iterations - iterations) <= 1


def test_algorithm_a_zero_scale_falls_back_to_classical_sd_and_flags():
    x = [5.0, 5.0, 5.0, 5.0, 5.0, 5.3, 4.6]
    r = algorithm_a(x)
    assert r.flagged and r.iterations == 0
    assert r.mean == 5.0
    assert r.sd == pytest.approx(float(np.std(x, ddof=1)), rel=1e-12)


def test_algorithm_a_all_identical_values_flags_with_zero_sd():
    r = algorithm_a([3.2] * 6)
    assert (r.mean, r.flagged, r.iterations) == (3.2, True, 0)
    assert r.sd == pytest.approx(0.0, abs=1e-12)


def test_algorithm_a_single_value_is_flagged_with_nan_sd():
    r = algorithm_a([4.2])
    assert r.mean == 4.2 and math.isnan(r.sd) and r.flagged and r.iterations == 0


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, float("inf")], [[1.0, 2.0]]])
def test_algorithm_a_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        algorithm_a(bad)


def test_iterative_3sd_drops_outlier_at_or_beyond_three_sd():
    r = iterative_3sd(ISO_X)
    kept = [v for v in ISO_X if v != 6.10]
    assert r.mean == pytest.approx(np.mean(kept), rel=1e-12)
    assert r.sd == pytest.approx(np.std(kept, ddof=1), rel=1e-12)
    assert (r.iterations, r.method, r.n) == (1, "iterative_3sd", 12)


def test_iterative_3sd_keeps_clean_data_and_rejects_bad_k():
    r = iterative_3sd([1.0, 2.0, 3.0])
    assert (r.mean, r.iterations) == (2.0, 0)
    with pytest.raises(ValueError):
        iterative_3sd([1.0, 2.0], k=0)


# --------------------------------------------------------------------------- vectorised == scalar

group_lists = st.lists(
    st.lists(st.one_of(st.floats(0.1, 500, allow_nan=False), st.sampled_from([5.0, 5.5])),
             min_size=1, max_size=40),
    min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(group_lists)
def test_algorithm_a_groups_equals_scalar_exactly(groups):
    values = np.concatenate([np.asarray(g, dtype=float) for g in groups])
    labels = np.repeat([f"g{i}" for i in range(len(groups))], [len(g) for g in groups])
    perm = np.random.default_rng(len(values)).permutation(values.size)
    out = algorithm_a_groups(values[perm], labels[perm])
    for i, g in enumerate(groups):
        r = algorithm_a(g)
        row = out.loc[f"g{i}"]
        assert row["mean"] == r.mean
        assert (row["sd"] == r.sd) or (math.isnan(row["sd"]) and math.isnan(r.sd))
        assert (row["n"], row["iterations"], row["flagged"], row["converged"]) == (
            r.n, r.iterations, r.flagged, r.converged)


def make_results(seed: int, n_groups: int = 6, max_labs: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for g in range(n_groups):
        n_labs = int(rng.integers(1, max_labs))
        target = rng.uniform(1, 300)
        for lab in rng.choice(500, n_labs, replace=False):
            n = int(rng.integers(1, 25))
            centre = target * (1 + rng.normal(0, 0.03))
            values = centre * (1 + rng.uniform(0.005, 0.08) * rng.standard_normal(n))
            if rng.random() < 0.1:
                values = np.round(values, 0)
            frames.append(pd.DataFrame({"qc_lot": f"L{g % 3}", "level": g // 3 + 1,
                                        "lab": f"lab{lab:03d}", "value": values}))
    df = pd.concat(frames, ignore_index=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("seed", range(8))
def test_group_statistics_equals_per_group_scalar_computation(seed):
    df = make_results(seed)
    out = group_statistics(df, by=["qc_lot", "level"])
    assert out.groups["method"].eq("algorithm_a").all()
    for (lot, level), raw in df.groupby(["qc_lot", "level"]):
        per_lab = raw.groupby("lab").value.agg(["count", "mean", "std"]).sort_index()
        labs = out.labs[(out.labs.qc_lot == lot) & (out.labs.level == level)].set_index("lab")
        labs = labs.sort_index()
        assert list(labs.index) == list(per_lab.index)
        np.testing.assert_array_equal(labs["n"], per_lab["count"])
        np.testing.assert_allclose(labs["lab_mean"], per_lab["mean"], rtol=1e-12)
        np.testing.assert_allclose(labs["lab_sd"], per_lab["std"], rtol=1e-9, atol=1e-12)
        cvs = 100 * per_lab["std"] / per_lab["mean"].abs()
        np.testing.assert_allclose(labs["lab_cv"], cvs, rtol=1e-9, atol=1e-12)

        group = out.groups[(out.groups.qc_lot == lot) & (out.groups.level == level)].iloc[0]
        means = labs["lab_mean"].to_numpy()
        robust = algorithm_a(means)
        assert group["group_mean"] == robust.mean
        assert group["group_sd"] == robust.sd or (np.isnan(group["group_sd"])
                                                  and np.isnan(robust.sd))
        assert (group["iterations"], group["flagged"]) == (robust.iterations, robust.flagged)
        summary = summarise_group(means, labs["lab_cv"].to_numpy(), labs["n"].to_numpy())
        gcv = group["group_cv"]
        assert gcv == summary.group_cv or (np.isnan(gcv) and np.isnan(summary.group_cv))
        assert (group["n_labs"], group["n_results"], group["publishable"]) == (
            summary.n_labs, summary.n_results, summary.publishable)

        if robust.sd > 0:
            np.testing.assert_allclose(labs["sdi"], sdi(means, robust.mean, robust.sd))
        np.testing.assert_allclose(labs["bias_pct"], bias_pct(means, robust.mean))
        if gcv > 0:
            np.testing.assert_allclose(labs["cvr"], cvr(labs["lab_cv"].to_numpy(), gcv))
        ranking = rank_in_group(np.abs(labs["bias_pct"].to_numpy()))
        np.testing.assert_array_equal(labs["bias_rank"], ranking.rank)
        np.testing.assert_array_equal(labs["bias_percentile"], ranking.percentile)
        ranking = rank_in_group(labs["lab_cv"].to_numpy())
        np.testing.assert_array_equal(labs["cv_rank"], ranking.rank)


def test_group_statistics_iterative_3sd_option_matches_scalar():
    df = make_results(11)
    out = group_statistics(df, by=["qc_lot", "level"], method="iterative_3sd")
    for _, group in out.groups.iterrows():
        sel = (out.labs.qc_lot == group.qc_lot) & (out.labs.level == group.level)
        means = out.labs.loc[sel, "lab_mean"].to_numpy()
        if means.size >= 2:
            assert group["group_mean"] == iterative_3sd(means).mean
    assert out.groups["method"].eq("iterative_3sd").all()


def test_group_statistics_skips_nan_results_and_handles_single_result_labs():
    df = pd.DataFrame({"analyte": ["GLU"] * 7, "lab": ["a", "a", "b", "c", "c", "d", "e"],
                       "value": [5.0, 5.2, 5.1, float("nan"), 4.9, 5.3, float("nan")]})
    out = group_statistics(df, by=["analyte"])
    assert list(out.labs.lab) == ["a", "b", "c", "d"]
    assert list(out.labs.n) == [2, 1, 1, 1]
    assert np.isnan(out.labs.loc[1, "lab_cv"])
    g = out.groups.iloc[0]
    assert (g.n_labs, g.n_results, g.publishable) == (4, 5, False)
    assert g.group_cv == pytest.approx(out.labs.loc[0, "lab_cv"])


def test_group_statistics_with_string_and_categorical_keys_gives_same_groups():
    df = make_results(3)
    cat = df.assign(qc_lot=df.qc_lot.astype("category"))
    a = group_statistics(df, by=["qc_lot", "level"]).groups
    b = group_statistics(cat, by=["qc_lot", "level"]).groups
    np.testing.assert_array_equal(a.group_mean, b.group_mean)


@pytest.mark.parametrize("kwargs, frame", [
    ({"by": ["missing"]}, pd.DataFrame({"lab": [1], "value": [1.0]})),
    ({"by": []}, pd.DataFrame({"lab": [1], "value": [1.0]})),
    ({"by": ["g"]}, pd.DataFrame({"g": [1], "lab": [1], "value": ["x"]})),
    ({"by": ["g"]}, pd.DataFrame({"g": [1], "lab": [1], "value": [np.inf]})),
    ({"by": ["g"], "method": "huber"}, pd.DataFrame({"g": [1], "lab": [1], "value": [1.0]})),
])
def test_group_statistics_rejects_bad_input(kwargs, frame):
    with pytest.raises(ValueError):
        group_statistics(frame, **kwargs)


# --------------------------------------------------------------------------- metrics & bands


def test_sdi_cvr_bias_formulas():
    assert sdi(5.5, 5.0, 0.25) == 2.0
    assert cvr(3.0, 2.0) == 1.5
    assert bias_pct(5.1, 5.0) == pytest.approx(2.0)
    np.testing.assert_allclose(sdi([4.5, 5.5], 5.0, 0.5), [-1.0, 1.0])


@pytest.mark.parametrize("call", [lambda: sdi(5.0, 5.0, 0.0), lambda: cvr(1.0, 0.0),
                                  lambda: bias_pct(1.0, 0.0), lambda: group_cv([1.0, -1.0])])
def test_metrics_reject_zero_denominators(call):
    with pytest.raises(ValueError):
        call()


def test_group_cv_is_mean_of_member_cvs():
    assert group_cv([2.0, 4.0]) == 3.0
    assert math.isnan(group_cv([float("nan")]))


@pytest.mark.parametrize("value, code", [
    (0.0, "acceptable"), (1.2499, "acceptable"), (1.25, "acceptable_investigate"),
    (-1.25, "acceptable_investigate"), (1.4999, "acceptable_investigate"),
    (1.5, "marginal"), (-1.9999, "marginal"), (2.0, "unacceptable"), (-2.0, "unacceptable"),
    (7.0, "unacceptable"),
])
def test_sdi_band_boundaries_belong_to_the_higher_band(value, code):
    assert sdi_band(value).code == code


@pytest.mark.parametrize("value, code", [
    (0.0, "good"), (1.0, "good"), (1.0000001, "acceptable"), (1.5, "acceptable"),
    (1.5000001, "investigate"), (2.0, "investigate"), (2.0000001, "unacceptable"),
])
def test_cvr_band_boundaries(value, code):
    assert cvr_band(value).code == code


def test_band_labels_are_chinese():
    assert [b.label for b in SDI_BANDS] == ["可接受", "可接受需调查", "临界", "不可接受"]
    assert [b.label for b in CVR_BANDS] == ["良好", "可接受", "需调查", "不可接受"]


@pytest.mark.parametrize("call", [lambda: sdi_band(float("nan")), lambda: cvr_band(-0.1),
                                  lambda: cvr_band(float("nan"))])
def test_bands_reject_bad_input(call):
    with pytest.raises(ValueError):
        call()


def test_rank_in_group_ties_share_min_rank_and_nan_is_unranked():
    r = rank_in_group([0.3, 0.1, 0.3, float("nan"), 0.9])
    np.testing.assert_array_equal(r.rank, [2, 1, 2, np.nan, 4])
    np.testing.assert_allclose(r.percentile, [100 / 3, 0, 100 / 3, np.nan, 100])
    single = rank_in_group([4.0])
    assert (single.rank[0], single.percentile[0]) == (1.0, 0.0)


def test_nccl_pass_uses_allowable_limits_and_reports_tea_fractions():
    r = nccl_pass(cv=3.0, bias=-2.0, allowable_cv=3.0, allowable_bias=2.0, tea=10.0)
    assert (r.passed, r.cv_pass, r.bias_pass) == (True, True, True)
    assert (r.cv_within_tea_third, r.cv_within_tea_quarter) == (True, False)
    r = nccl_pass(cv=3.01, bias=0.0, allowable_cv=3.0, allowable_bias=2.0, tea=10.0)
    assert (r.passed, r.cv_pass) == (False, False)


def test_nccl_pass_falls_back_to_tea_fractions():
    r = nccl_pass(cv=2.0, bias=3.5, allowable_cv=None, allowable_bias=None, tea=7.0)
    assert (r.cv_limit, r.bias_limit) == (pytest.approx(7 / 3), 3.5)
    assert r.passed
    with pytest.raises(ValueError):
        nccl_pass(cv=-1.0, bias=0.0, allowable_cv=None, allowable_bias=None, tea=7.0)


@pytest.mark.parametrize("sigma, expected", [
    (math.inf, "A"), (6.0, "A"), (5.9999, "B"), (4.0, "B"), (3.9999, "C"), (3.0, "C"),
    (2.9999, "D"), (-1.0, "D"),
])
def test_grade_boundaries(sigma, expected):
    assert grade(sigma) == expected


def test_grade_rejects_nan_and_grade_performance_keeps_inputs():
    with pytest.raises(ValueError):
        grade(float("nan"))
    r = grade_performance(bias=1.5, cv=1.8, tea=7.0, source="WS/T 403-2024")
    assert (r.grade, round(r.sigma, 2), r.tea, r.source) == ("C", 3.06, 7.0, "WS/T 403-2024")


def test_lab_overall_grade_share_at_a_or_b():
    r = lab_overall_grade(["A", "A", "B", "C", "D"])
    assert (r.n_analytes, r.n_a, r.n_b, r.n_c, r.n_d) == (5, 2, 1, 1, 1)
    assert r.share_ab == 0.6 and r.pct_ab == 60.0
    with pytest.raises(ValueError):
        lab_overall_grade([])
    with pytest.raises(ValueError):
        lab_overall_grade(["E"])


# --------------------------------------------------------------------------- publication


@pytest.mark.parametrize("n_labs, n_results, expected", [
    (5, 20, True), (4, 20, False), (5, 19, False), (50, 1000, True)])
def test_publishable_needs_five_labs_and_twenty_results(n_labs, n_results, expected):
    assert publishable(n_labs, n_results) is expected


def test_choose_group_level_falls_back_peer_method_all():
    assert choose_group_level({"peer": (6, 30), "method": (9, 50)}).level == "peer"
    choice = choose_group_level({"peer": (4, 80), "method": (9, 19), "all": (40, 900)})
    assert (choice.level, choice.n_labs, choice.n_results) == ("all", 40, 900)
    assert choose_group_level({"peer": (1, 1)}) is None
    with pytest.raises(ValueError):
        choose_group_level({"region": (9, 90)})


# --------------------------------------------------------------------------- incremental


def test_update_lab_moments_tracks_running_sums():
    values = [5.02, 5.10, 4.95, 5.05]
    m = update_lab_moments(None, add=values[:3])
    m = update_lab_moments(m, add=values[3])
    assert m.n == 4
    assert m.mean == pytest.approx(np.mean(values), rel=1e-14)
    assert m.sd == pytest.approx(np.std(values, ddof=1), rel=1e-9)
    assert m.cv == pytest.approx(100 * np.std(values, ddof=1) / np.mean(values), rel=1e-9)
    m = update_lab_moments(m, remove=5.05, add=5.15)
    assert m.mean == pytest.approx(np.mean([5.02, 5.10, 4.95, 5.15]), rel=1e-14)
    assert update_lab_moments(m, remove=m.n * [0.0]) == LabMoments()
    with pytest.raises(ValueError):
        update_lab_moments(LabMoments(), remove=1.0)
    with pytest.raises(ValueError):
        update_lab_moments(None, add=float("nan"))
    assert math.isnan(LabMoments(1, 5.0, 25.0).sd)


def test_summarise_group_recomputes_one_group():
    s = summarise_group(ISO_X, [2.0] * 12, [3] * 12)
    assert round(s.mean, 4) == 5.0413 and round(s.sd, 4) == 0.1009
    assert (s.n_labs, s.n_results, s.group_cv, s.publishable) == (12, 36, 2.0, True)
    assert summarise_group([5.0, 5.1]).publishable is False
