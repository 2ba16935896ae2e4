"""The compute path: units in every level, negative and zero means (issue 9, items 4–5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qcwx.peer import compute
from qcwx.peer.units import unit_key, unit_known
from tests.peer.conftest import algorithm_a_reference
from tests.peer.test_compute import frame_from


def test_unit_spellings_fold_to_one_key_and_different_units_stay_apart():
    same = ["mmol/L", " mmol/l ", "MMOL/L", "ｍｍｏｌ／Ｌ", "mmol /L"]
    assert {unit_key(u) for u in same} == {"mmol/l"}
    assert unit_key("µmol/L") == unit_key("μmol/L") == unit_key("umol/L") == "umol/l"
    assert unit_key("10⁹/L") == unit_key("×10^9/L") == "10^9/l"
    assert unit_key("mg/dL") != unit_key("mmol/L") and unit_key(None) == ""
    assert unit_known("ｕ／Ｌ") and unit_known("µIU/mL") and not unit_known("毫摩尔")


def test_no_level_pools_units_whatever_keys_the_caller_passes():
    # Six labs each in mmol/L and mg/dL on one lot/level, same maker and method.
    values = {i: [5.5 + 0.01 * i, 5.6, 5.4, 5.5] for i in range(1, 7)}
    values.update({i: [99.0 + 0.2 * i, 100.0, 98.0, 99.0] for i in range(7, 13)})
    attrs = {i: {"maker": "A", "method": "HK", "unit": "mmol/L" if i < 7 else "mg/dL"}
             for i in values}
    attrs[3]["unit"] = "ｍｍｏｌ／ｌ"  # one unit with mmol/L
    frame = frame_from(values, attrs)
    keys = {"peer": ["qc_level_id", "analyte_id", "instrument_maker", "method", "unit"],
            "method": ["qc_level_id", "analyte_id", "method"], "all": ["qc_level_id"]}
    for level_keys in (None, keys):
        labs = compute.compare(frame, level_keys).set_index("ts_id")
        for lv in ("peer", "method", "all"):
            assert (labs[f"{lv}_n_labs"] == 6).all()
        for ts, unit_values in ((1, range(1, 7)), (7, range(7, 13))):
            mean, _ = algorithm_a_reference([np.mean(values[i]) for i in unit_values])
            assert labs.loc[ts, "g_mean"] == pytest.approx(mean, rel=1e-12)
    stats = compute.level_stats(compute.system_stats(frame), [])
    assert set(stats["n_labs"]) == {6} and stats["group"].nunique() == 2


def test_negative_means_give_positive_cvs_and_a_bias_with_the_sdi_sign():
    # Base excess around −3 mmol/L in six labs.
    values = {i: [-3.0 - 0.05 * i + d for d in (-0.1, 0.0, 0.1, 0.05)] for i in range(1, 7)}
    frame = frame_from(values, {i: {"maker": "A", "method": "HK"} for i in values})
    labs = compute.compare(frame).set_index("ts_id")
    assert (labs["cv"] > 0).all() and (labs["g_cv"] > 0).all()
    for ts, vals in values.items():
        assert labs.loc[ts, "cv"] == pytest.approx(
            100 * np.std(vals, ddof=1) / abs(np.mean(vals)), rel=1e-9)
    assert (np.sign(labs["bias_pct"]) == np.sign(labs["sdi"])).all()
    assert labs.loc[6, "bias_pct"] < 0  # the most negative lab is below its group


def test_a_mean_that_cancels_to_zero_has_no_cv():
    frame = frame_from({1: [-0.3, 0.1, 0.2], 2: [0.0, 0.0]},
                       {i: {"maker": "A", "method": "HK"} for i in (1, 2)})
    out = compute.system_stats(frame)
    assert out["cv"].isna().all() and not np.isinf(out["cv"]).any()
    assert out.loc[0, "sd"] > 0 and math.isclose(out.loc[0, "mean"], 0.0, abs_tol=1e-15)
