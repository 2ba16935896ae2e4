"""Westgard multirules (QC_SPEC section 1): rules, scopes, evaluation, properties."""

import doctest
import importlib.util
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qcwx.qcstats import westgard
from qcwx.qcstats.westgard import (
    MAX_LOOKBACK,
    RULE_CODES,
    RULE_INFO,
    evaluate,
    evaluate_last,
    fired_matrix,
    lookback_start,
    rules_fired,
    sigma_rule_set,
    validate_rule_set,
)
from qcwx.qcstats.westgard import default_rule_set as default_rules

NAN = math.nan


def fires_at(z, code):
    """Return the run indices where ``code`` fires."""
    return [i for i, s in enumerate(rules_fired(np.asarray(z, dtype=float), [code])) if s]


def _load_reference():
    path = Path(__file__).resolve().parents[2] / "bench" / "bench_westgard.py"
    spec = importlib.util.spec_from_file_location("bench_westgard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_rules_fired


reference_rules_fired = _load_reference()


# --- API and validation ---------------------------------------------------------------


def test_rule_codes_are_exactly_the_spec_codes_in_order():
    assert RULE_CODES == (
        "1-2s", "1-2.5s", "1-3s", "1-3.5s", "2-2s", "R-4s", "2of3-2s", "3-1s", "4-1s",
        "6x", "7T", "8x", "9x", "10x", "12x",
    )


def test_docstring_examples_run():
    assert doctest.testmod(westgard).failed == 0


def test_rules_fired_returns_one_frozenset_per_run():
    out = rules_fired(np.zeros((5, 2)))
    assert out == [frozenset()] * 5
    assert all(isinstance(s, frozenset) for s in out)


def test_rules_fired_accepts_one_dimensional_input_as_one_level():
    z = [0.3, 2.2, 2.1]
    assert rules_fired(z) == rules_fired(np.array(z)[:, None])


def test_rules_fired_of_no_run_is_empty():
    assert rules_fired(np.empty((0, 2))) == []


def test_rules_fired_accepts_a_single_code_string():
    assert rules_fired([2.5], "1-2s") == [frozenset({"1-2s"})]


@pytest.mark.parametrize("rules", [["1-2s", "2-2S"], ["13s"], "bogus"])
def test_unknown_rule_code_raises_value_error(rules):
    with pytest.raises(ValueError, match="unknown rule code"):
        rules_fired(np.zeros((3, 2)), rules)


@pytest.mark.parametrize("shape", [(3, 2, 2), (3, 4), (3, 0), (2, 50)])
def test_bad_shape_raises_value_error(shape):
    with pytest.raises(ValueError, match="shape"):
        rules_fired(np.zeros(shape))


def test_infinite_z_raises_value_error():
    with pytest.raises(ValueError, match="infinite"):
        rules_fired([[0.0, math.inf]])


def test_non_numeric_z_raises_value_error():
    with pytest.raises(ValueError, match="numbers"):
        rules_fired([["a", "b"]])


def test_fired_matrix_columns_follow_rule_codes_order():
    m = fired_matrix([[2.5, 0.0]], ["R-4s", "1-2s"])
    assert m.tolist() == [[True, False]]


# --- one-result rules -------------------------------------------------------------------

ONE_RESULT = [("1-2s", 2.0), ("1-2.5s", 2.5), ("1-3s", 3.0), ("1-3.5s", 3.5)]


@pytest.mark.parametrize(("code", "k"), ONE_RESULT)
def test_one_result_rule_fires_exactly_at_the_limit_on_both_sides(code, k):
    assert fires_at([k, -k, 0.0], code) == [0, 1]


@pytest.mark.parametrize(("code", "k"), ONE_RESULT)
def test_one_result_rule_does_not_fire_just_inside_the_limit(code, k):
    assert fires_at([k - 0.001, -(k - 0.001), 0.0], code) == []


@pytest.mark.parametrize(("code", "k"), ONE_RESULT)
@pytest.mark.parametrize("n_levels", [1, 2, 3])
def test_one_result_rule_fires_on_any_level(code, k, n_levels):
    z = np.zeros((n_levels, n_levels))
    np.fill_diagonal(z, -k)
    assert fires_at(z, code) == list(range(n_levels))


def test_one_result_rule_ignores_a_missing_level():
    assert fires_at([[NAN, 0.5], [NAN, NAN]], "1-2s") == []


# --- 2-2s -------------------------------------------------------------------------------


def test_2_2s_fires_across_levels_in_one_run():
    assert fires_at([[0.0, 0.0], [2.0, 2.0]], "2-2s") == [1]
    assert fires_at([[-2.3, -2.1]], "2-2s") == [0]


def test_2_2s_does_not_fire_just_inside_the_limit():
    assert fires_at([[2.0, 1.999], [0.0, 0.0]], "2-2s") == []


def test_2_2s_does_not_fire_on_opposite_sides():
    assert fires_at([[2.5, -2.5]], "2-2s") == []


def test_2_2s_fires_within_one_level_across_two_runs():
    assert fires_at([[2.1, 0.3], [2.0, -0.4], [0.0, 0.0]], "2-2s") == [1]


def test_2_2s_fires_for_one_level_system():
    assert fires_at([2.1, 2.0, 1.0, -2.0, -2.2], "2-2s") == [1, 4]


def test_2_2s_does_not_fire_across_levels_and_runs():
    # Run 0 level 2 and run 1 level 1 are consecutive in the across-level sequence,
    # but neither in one run nor in one level.
    assert fires_at([[0.0, 2.4], [2.4, 0.0]], "2-2s") == []


def test_2_2s_within_level_skips_a_missing_run_of_that_level():
    assert fires_at([[2.2, 0.0], [NAN, 0.0], [2.1, 0.0]], "2-2s") == [2]


def test_2_2s_with_three_levels_needs_adjacent_levels_in_the_run():
    assert fires_at([[2.2, 0.0, 2.2]], "2-2s") == []
    assert fires_at([[2.2, NAN, 2.2]], "2-2s") == [0]
    assert fires_at([[0.0, 2.2, 2.2]], "2-2s") == [0]


# --- R-4s -------------------------------------------------------------------------------


def test_r_4s_fires_when_range_in_a_run_reaches_4_sd():
    assert fires_at([[0.0, 0.0], [2.0, -2.0]], "R-4s") == [1]


def test_r_4s_does_not_fire_just_below_4_sd():
    assert fires_at([[2.0, -1.999]], "R-4s") == []


def test_r_4s_uses_the_range_form_without_requiring_both_2s_limits():
    assert fires_at([[3.5, -0.5]], "R-4s") == [0]


def test_r_4s_never_fires_across_runs():
    assert fires_at([[2.5, 0.0], [0.0, -2.5], [-2.5, NAN]], "R-4s") == []


def test_r_4s_never_fires_for_one_level():
    assert fires_at([3.0, -3.0, 3.0], "R-4s") == []


def test_r_4s_with_three_levels_and_a_missing_level():
    z = [[2.1, NAN, -2.0]]
    assert fires_at(z, "R-4s") == [0]
    violation = evaluate(z, {"R-4s": "reject"})[0].violations[0]
    assert violation.points == ((0, 0), (0, 2))


def test_r_4s_reports_every_level_at_4_sd_from_another():
    violation = evaluate([[2.2, 2.1, -1.95]], {"R-4s": "reject"})[0].violations[0]
    assert violation.levels == (0, 1, 2)


# --- 2of3-2s ----------------------------------------------------------------------------


def test_2of3_2s_fires_within_level():
    assert fires_at([0.0, 2.1, 0.5, 2.0], "2of3-2s") == [3]


def test_2of3_2s_does_not_fire_below_the_limit_or_on_opposite_sides():
    assert fires_at([2.1, 0.5, 1.999], "2of3-2s") == []
    assert fires_at([2.1, 0.5, -2.1], "2of3-2s") == []


def test_2of3_2s_fires_within_a_run_of_three_levels():
    assert fires_at([[0.0, 0.0, 0.0], [2.0, 0.1, 2.0]], "2of3-2s") == [1]


def test_2of3_2s_fires_across_levels_spanning_runs():
    z = [[0.0, 2.1], [2.2, 0.0]]
    assert fires_at(z, "2of3-2s") == [1]
    assert fires_at(z, "2-2s") == []


def test_2of3_2s_window_counts_for_its_newest_run():
    # The window (2.1, 2.1, 0.0) contains a result of run 3, so the rule fires there too.
    assert fires_at([0.0, 2.1, 2.1, 0.0, 0.0], "2of3-2s") == [2, 3]


def test_2of3_2s_needs_three_results():
    assert fires_at([2.1, 2.1], "2of3-2s") == []


# --- 3-1s and 4-1s ----------------------------------------------------------------------


def test_3_1s_fires_exactly_at_1_sd_within_level():
    assert fires_at([1.0, 1.0, 1.0], "3-1s") == [2]
    assert fires_at([-1.0, -1.5, -1.0], "3-1s") == [2]


def test_3_1s_does_not_fire_just_inside_or_on_mixed_sides():
    assert fires_at([1.0, 1.0, 0.999], "3-1s") == []
    assert fires_at([1.0, -1.0, 1.0], "3-1s") == []


def test_3_1s_fires_within_a_run_of_three_levels():
    assert fires_at([[1.2, 1.1, 1.0]], "3-1s") == [0]


def test_3_1s_fires_across_levels_spanning_runs():
    assert fires_at([[0.0, 1.5], [1.5, 1.5]], "3-1s") == [1]


def test_3_1s_fires_within_level_while_other_level_is_in_control():
    assert fires_at([[1.1, -0.5], [1.1, -0.5], [1.1, -0.5]], "3-1s") == [2]


def test_4_1s_fires_within_level_over_four_runs():
    assert fires_at([1.0, 1.2, 1.1, 1.0, 0.2], "4-1s") == [3]


def test_4_1s_does_not_fire_just_inside_the_limit():
    assert fires_at([1.0, 1.2, 1.1, 0.999], "4-1s") == []


def test_4_1s_fires_across_levels_two_runs_by_two_levels():
    z = [[1.2, 1.1], [1.3, 1.05]]
    assert fires_at(z, "4-1s") == [1]
    violation = evaluate(z, {"4-1s": "reject"})[1].violations[0]
    assert violation.points == ((0, 0), (0, 1), (1, 0), (1, 1))
    assert violation.levels == (0, 1)


def test_4_1s_fires_across_levels_with_three_levels():
    assert fires_at([[0.0, 1.1, 1.2], [1.3, 1.4, 0.0]], "4-1s") == [1]


def test_4_1s_fires_within_level_with_the_other_level_in_control():
    z = [[-1.1, 0.2], [-1.2, -0.1], [-1.1, 0.3], [-1.4, 0.0]]
    assert fires_at(z, "4-1s") == [3]


def test_4_1s_ignores_a_missing_result():
    assert fires_at([[1.1, NAN], [1.1, NAN], [NAN, NAN], [1.1, NAN], [1.2, NAN]], "4-1s") == [4]


# --- n-x --------------------------------------------------------------------------------

NX = [("6x", 6), ("8x", 8), ("9x", 9), ("10x", 10), ("12x", 12)]


@pytest.mark.parametrize(("code", "n"), NX)
@pytest.mark.parametrize("side", [1.0, -1.0])
def test_nx_fires_after_n_results_on_one_side(code, n, side):
    assert fires_at([side * 0.3] * n + [-side * 0.3], code) == [n - 1]


@pytest.mark.parametrize(("code", "n"), NX)
def test_nx_does_not_fire_after_n_minus_1_results(code, n):
    assert fires_at([0.3] * (n - 1) + [-0.3] + [0.3] * (n - 1), code) == []


@pytest.mark.parametrize(("code", "n"), NX)
def test_nx_run_is_broken_by_a_result_exactly_at_the_mean(code, n):
    z = [0.4] * (n - 1) + [0.0] + [0.4] * (n - 1)
    assert fires_at(z, code) == []
    z[n - 1] = 0.4
    assert fires_at(z, code)[0] == n - 1


@pytest.mark.parametrize(("code", "n"), NX)
def test_nx_skips_a_missing_result(code, n):
    z = [-0.4] * (n - 1) + [NAN, -0.4]
    assert fires_at(z, code) == [n]


@pytest.mark.parametrize(("code", "n"), [("6x", 6), ("8x", 8), ("10x", 10), ("12x", 12)])
def test_nx_fires_across_two_levels_in_half_the_runs(code, n):
    z = np.full((n // 2 + 1, 2), 0.2)
    z[-1] = -0.2
    assert fires_at(z, code) == [n // 2 - 1]


def test_9x_fires_across_three_levels_in_three_runs():
    assert fires_at(np.full((3, 3), -0.2), "9x") == [2]


def test_6x_fires_within_level_while_the_other_level_alternates():
    z = np.column_stack([np.full(7, 0.5), [0.5, -0.5] * 3 + [0.5]])
    assert fires_at(z, "6x") == [5, 6]


# --- 7T ---------------------------------------------------------------------------------


def test_7t_fires_on_seven_strictly_rising_results():
    assert fires_at([-1.5, -1.0, -0.6, 0.0, 0.4, 0.9, 1.3], "7T") == [6]


def test_7t_fires_on_seven_strictly_falling_results():
    assert fires_at([1.5, 1.0, 0.6, 0.0, -0.4, -0.9, -1.3, -1.0], "7T") == [6]


def test_7t_does_not_fire_on_six_results_or_a_flat_step():
    assert fires_at([-1.5, -1.0, -0.6, 0.0, 0.4, 0.9], "7T") == []
    assert fires_at([-1.5, -1.0, -0.6, -0.6, 0.4, 0.9, 1.3], "7T") == []


def test_7t_is_within_level_only():
    # The across-level sequence rises over 8 results, each level over only 4.
    z = np.arange(8, dtype=float).reshape(4, 2) / 4 - 1
    assert fires_at(z, "7T") == []


def test_7t_fires_for_one_level_of_two():
    z = np.column_stack([np.linspace(-1, 1, 7), [0.3, -0.3] * 3 + [0.3]])
    assert fires_at(z, "7T") == [6]


def test_7t_skips_a_missing_result():
    z = [[v, 0.0] for v in (-1.5, -1.0, -0.6, 0.0)] + [[NAN, 0.0]]
    z += [[v, 0.0] for v in (0.4, 0.9, 1.3)]
    assert fires_at(z, "7T") == [7]


# --- worked example (QC_SPEC 1.3, Westgard "Break All the Rules", part one) -------------

EXAMPLE_VALUES = """
42.5 55.1 46.4 47.0 43.1 56.9 41.3 44.9 45.5 41.3 47.0 37.7 41.6 53.3 55.4 44.6 47.3 48.2 41.3
42.8 44.3 47.6 44.3 45.8 47.6 39.8 39.8 50.9 49.7 45.5 45.2 47.3 47.9 44.3 40.1 48.2 40.7 41.9
43.4 43.7 49.7 42.2 52.1 44.6 45.2 45.8 41.6 41.3 44.9 43.7 45.2 50.6 50.3 51.2 51.5 44.3 41.6
""".split()
EXAMPLE_RULES = ("1-2s", "1-3s", "2-2s", "R-4s", "4-1s", "8x", "10x")
# Published key, runs numbered from 1.
EXAMPLE_KEY = {
    "1-2s": [2, 6, 12, 14, 15, 26, 27, 35, 37],
    "1-3s": [6, 12],
    "2-2s": [15, 27],
    "4-1s": [40, 55],
    "8x": [51],
}


def example_z():
    return (np.array(EXAMPLE_VALUES, dtype=float) - 47.0) / 3.0


def test_worked_example_fires_exactly_the_published_rules_run_by_run():
    z = example_z()
    assert z.size == 57
    expected = [set() for _ in range(57)]
    for code, runs in EXAMPLE_KEY.items():
        for run in runs:
            expected[run - 1].add(code)
    got = rules_fired(z, EXAMPLE_RULES)
    for run, (want, have) in enumerate(zip(expected, got, strict=True), start=1):
        assert have == want, f"run {run}"


def test_worked_example_statuses():
    rule_set = dict.fromkeys(EXAMPLE_RULES, "reject") | {"1-2s": "warning"}
    result = evaluate(example_z(), rule_set)
    rejected = [i + 1 for i, s in enumerate(result.status) if s == "reject"]
    warned = [i + 1 for i, s in enumerate(result.status) if s == "warning"]
    assert rejected == [6, 12, 15, 27, 40, 51, 55]
    assert warned == [2, 14, 26, 35, 37]


def test_worked_example_4_1s_points_are_the_four_runs():
    result = evaluate(example_z(), {"4-1s": "reject"})
    assert result[39].violations[0].points == ((36, 0), (37, 0), (38, 0), (39, 0))


# --- evaluate, rule sets -----------------------------------------------------------------


def test_evaluate_status_follows_the_roles_of_the_fired_rules():
    z = [[0.0, 0.0], [2.1, 0.0], [2.1, 2.1], [-3.1, 0.0]]
    rule_set = {"1-2s": "warning", "2-2s": "reject", "1-3s": "off"}
    assert evaluate(z, rule_set).status == ("accept", "warning", "reject", "warning")


def test_evaluate_reports_rule_role_run_and_points():
    run = evaluate([[2.1, 2.2]], {"1-2s": "warning", "2-2s": "reject"})[0]
    assert run.run == 0
    assert run.status == "reject"
    assert run.rules == {"1-2s", "2-2s"}
    assert [(v.rule, v.role, v.levels) for v in run.violations] == [
        ("1-2s", "warning", (0, 1)), ("2-2s", "reject", (0, 1)),
    ]
    assert run.violations[1].points == ((0, 0), (0, 1))


def test_evaluate_runs_can_be_iterated_and_indexed_from_the_end():
    result = evaluate([0.0, 2.5], {"1-2s": "warning"})
    assert len(result) == 2
    assert [r.status for r in result] == ["accept", "warning"]
    assert result[-1] == result[1]
    with pytest.raises(IndexError):
        result[2]


def test_validate_rule_set_completes_absent_codes_with_off():
    full = validate_rule_set({"1-3s": "reject"})
    assert list(full) == list(RULE_CODES)
    assert full["1-3s"] == "reject"
    assert full["2-2s"] == "off"


@pytest.mark.parametrize(
    ("rule_set", "message"),
    [
        ({"1-3S": "reject"}, "unknown rule code"),
        ({"1-3s": "fail"}, "invalid role"),
        ({"1-3s": "off"}, "enables no rule"),
        ({}, "enables no rule"),
        (["1-3s"], "mapping"),
    ],
)
def test_validate_rule_set_rejects_bad_rule_sets(rule_set, message):
    with pytest.raises(ValueError, match=message):
        validate_rule_set(rule_set)


def test_evaluate_rejects_a_bad_rule_set():
    with pytest.raises(ValueError, match="enables no rule"):
        evaluate([0.0], {})


def _enabled(rule_set, role):
    return {c for c, r in rule_set.items() if r == role}


def test_default_rule_sets_match_the_spec():
    assert _enabled(default_rules(1), "reject") == {"1-3s", "2-2s", "4-1s", "10x"}
    assert _enabled(default_rules(2), "reject") == {"1-3s", "2-2s", "R-4s", "4-1s", "10x"}
    assert _enabled(default_rules(3), "reject") == {"1-3s", "2of3-2s", "R-4s", "3-1s", "6x"}
    for n in (1, 2, 3):
        assert _enabled(default_rules(n), "warning") == {"1-2s"}
        assert validate_rule_set(default_rules(n)) == default_rules(n)


@pytest.mark.parametrize("n_levels", [0, 4])
def test_default_rule_set_rejects_other_level_counts(n_levels):
    with pytest.raises(ValueError, match="1, 2 or 3"):
        default_rules(n_levels)


@pytest.mark.parametrize(
    ("sigma", "rules"),
    [
        (7.0, {"1-3s"}),
        (6.0, {"1-3s"}),
        (5.999, {"1-3s", "2-2s", "R-4s"}),
        (5.0, {"1-3s", "2-2s", "R-4s"}),
        (4.999, {"1-3s", "2-2s", "R-4s", "4-1s"}),
        (4.0, {"1-3s", "2-2s", "R-4s", "4-1s"}),
        (3.999, {"1-3s", "2-2s", "R-4s", "4-1s", "8x"}),
        (-1.0, {"1-3s", "2-2s", "R-4s", "4-1s", "8x"}),
    ],
)
def test_sigma_rule_set_follows_westgard_sigma_rules(sigma, rules):
    rule_set = sigma_rule_set(sigma)
    assert _enabled(rule_set, "reject") == rules
    assert _enabled(rule_set, "warning") == set()


def test_sigma_rule_set_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        sigma_rule_set(math.nan)


def test_rule_info_explains_every_code_in_chinese_only():
    assert set(RULE_INFO) == set(RULE_CODES)
    for info in RULE_INFO.values():
        for text in (info.name, info.error, info.explanation):
            assert text
            assert not re.search("[A-Za-z]", text), text
    assert "随机误差" in RULE_INFO["R-4s"].error
    assert "系统误差" in RULE_INFO["2-2s"].error
    assert "趋势" in RULE_INFO["7T"].error


# --- incremental evaluation -------------------------------------------------------------


def test_lookback_is_twelve_runs_without_missing_levels():
    assert lookback_start(np.zeros((100, 2))) == 100 - MAX_LOOKBACK
    assert lookback_start(np.zeros((5, 2))) == 0


def test_lookback_reaches_back_to_the_twelfth_result_of_each_present_level():
    z = np.zeros((100, 2))
    z[80:99, 1] = NAN  # level 2 missing in runs 80..98, present in run 99
    assert lookback_start(z) == 100 - 19 - MAX_LOOKBACK


def test_lookback_ignores_levels_absent_from_the_newest_run():
    z = np.zeros((100, 2))
    z[:, 1] = NAN
    assert lookback_start(z) == 100 - MAX_LOOKBACK
    z[-1] = NAN
    assert lookback_start(z) == 99


def test_evaluate_last_equals_full_evaluation_of_the_last_run():
    z = example_z()
    rule_set = dict.fromkeys(EXAMPLE_RULES, "reject")
    for n in (40, 51, 55, 57):
        assert evaluate_last(z[:n], rule_set) == evaluate(z[:n], rule_set)[-1]


def test_evaluate_last_with_recent_rows_and_first_run_offset():
    z = example_z()
    rule_set = {"8x": "reject"}
    recent = evaluate_last(z[51 - 20:51], rule_set, first_run=31)
    assert recent == evaluate(z[:51], rule_set)[-1]
    assert recent.run == 50
    assert recent.violations[0].points[0] == (43, 0)


def test_evaluate_last_of_no_run_raises():
    with pytest.raises(ValueError, match="no run"):
        evaluate_last(np.empty((0, 2)), {"1-3s": "reject"})


# --- properties -------------------------------------------------------------------------

Z_VALUES = st.one_of(
    st.sampled_from([-3.5, -3.0, -2.5, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 3.5]),
    st.floats(-4.0, 4.0, allow_nan=False),
    st.just(NAN),
)


@st.composite
def z_arrays(draw, max_runs=40):
    n_levels = draw(st.integers(1, 3))
    n_runs = draw(st.integers(0, max_runs))
    return draw(hnp.arrays(np.float64, (n_runs, n_levels), elements=Z_VALUES))


@st.composite
def rule_sets(draw):
    roles = draw(st.lists(st.sampled_from(["off", "warning", "reject"]),
                          min_size=len(RULE_CODES), max_size=len(RULE_CODES)))
    rule_set = dict(zip(RULE_CODES, roles, strict=True))
    if all(r == "off" for r in roles):
        rule_set[draw(st.sampled_from(RULE_CODES))] = "reject"
    return rule_set


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(z_arrays())
def test_flipping_the_sign_of_every_z_leaves_fired_rules_unchanged(z):
    assert rules_fired(-z) == rules_fired(z)


@PROPERTY
@given(z_arrays(), st.data())
def test_adding_later_runs_never_changes_an_earlier_verdict(z, data):
    k = data.draw(st.integers(0, z.shape[0]))
    assert rules_fired(z[:k]) == rules_fired(z)[:k]


@PROPERTY
@given(z_arrays())
def test_vectorised_rules_match_the_per_run_reference(z):
    assert rules_fired(z) == reference_rules_fired(z)


@PROPERTY
@given(z_arrays(max_runs=60), rule_sets())
def test_incremental_evaluation_of_last_run_equals_full_evaluation(z, rule_set):
    if z.shape[0] == 0:
        return
    full = evaluate(z, rule_set)[-1]
    assert evaluate_last(z, rule_set) == full
    start = lookback_start(z)
    assert evaluate_last(z[start:], rule_set, first_run=start) == full


#: z at, just inside and just outside every limit and the mean's tolerance, and the float64
#: quotient of a value typed at +3 SD ((4.3 - 4.0) / 0.1): where two forms of a rule would
#: part ways if one compared differently.
EDGE_VALUES = st.sampled_from(sorted({
    s * v for s in (1, -1) for k in (0.0, 1.0, 2.0, 2.5, 3.0, 3.5, 4.0)
    for v in (k, k - westgard.TOLERANCE, k - 2 * westgard.TOLERANCE, k + westgard.TOLERANCE,
              k - 1e-12)} | {(4.3 - 4.0) / 0.1, 1.9999999999999982, NAN}, key=str))


@st.composite
def edge_arrays(draw):
    n_levels = draw(st.integers(1, 3))
    n_runs = draw(st.integers(1, 30))
    return draw(hnp.arrays(np.float64, (n_runs, n_levels),
                           elements=st.one_of(EDGE_VALUES, Z_VALUES)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_arrays(), rule_sets())
def test_last_run_judged_in_python_equals_the_vectorised_engine_at_every_edge(z, rule_set):
    """evaluate_last applies the rules in plain Python; evaluate is the vectorised engine."""
    full = evaluate(z, rule_set)[-1]
    assert evaluate_last(z, rule_set) == full
    start = lookback_start(z)
    assert evaluate_last(z[start:], rule_set, first_run=start) == full


@pytest.mark.parametrize(("z", "code", "points"), [
    # 2-2s within a run may not take the previous run's last level (that is "across")
    ([[0.0, 2.1], [2.1, 0.0]], "2-2s", None),
    ([[0.0, 0.0], [2.1, 2.0 - 1e-10]], "2-2s", [(1, 0), (1, 1)]),
    # ... but within a level it spans two runs
    ([[2.1, 0.0], [2.1, 0.0]], "2-2s", [(0, 0), (1, 0)]),
    # R-4s counts NaN as not run, and only the results 4 SD from the other end
    ([[2.0, NAN, -2.0 + 1e-10]], "R-4s", [(0, 0), (0, 2)]),
    ([[2.0, 0.5, -1.99]], "R-4s", None),
    # 7T: six steps each up by at least the tolerance; a flat step breaks it
    ([[float(i)] for i in range(7)], "7T", [(i, 0) for i in range(7)]),
    ([[0.0], [1.0], [2.0], [2.0], [3.0], [4.0], [5.0], [6.0]], "7T", None),
    ([[1.0 + i * 5e-10] for i in range(7)], "7T", None),  # steps within the tolerance
    # 10x across levels: a z within the tolerance of the mean breaks the run
    ([[0.5, 0.5]] * 5, "10x", [(r, lv) for r in range(5) for lv in range(2)]),
    ([[0.5, 0.5]] * 4 + [[0.5, 1e-10]], "10x", None),
])
def test_last_run_edges(z, code, points):
    got = evaluate_last(np.asarray(z, dtype=float), {code: "reject"})
    assert got == evaluate(np.asarray(z, dtype=float), {code: "reject"})[-1]
    if points is None:
        assert got.status == "accept" and got.violations == ()
    else:
        assert got.status == "reject"
        assert [v.points for v in got.violations] == [tuple(points)]


@PROPERTY
@given(z_arrays(), rule_sets())
def test_status_is_reject_over_warning_over_accept_by_role(z, rule_set):
    result = evaluate(z, rule_set)
    for run, fired in zip(result, rules_fired(z), strict=True):
        roles = {rule_set[c] for c in fired}
        expected = "reject" if "reject" in roles else "warning" if "warning" in roles else "accept"
        assert run.status == expected
        assert run.rules == {c for c in fired if rule_set[c] != "off"}
        assert all(v.role == rule_set[v.rule] and v.run == run.run for v in run.violations)


@PROPERTY
@given(z_arrays(), rule_sets())
def test_every_violation_includes_a_result_of_its_run(z, rule_set):
    for run in evaluate(z, rule_set):
        for v in run.violations:
            assert any(r == run.run for r, _ in v.points)
            assert all(r <= run.run and not math.isnan(z[r, lv]) for r, lv in v.points)
            assert v.levels == tuple(sorted({lv for _, lv in v.points}))
