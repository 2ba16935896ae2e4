"""Quality specification tables (WS/T 403-2024 defaults and NCCL EQA limits) as data."""

from __future__ import annotations

import dataclasses

import pytest

from qcwx.qcstats.specs import (
    NCCL_EQA,
    WST403_2024,
    Tea,
    UnknownAnalyteError,
    effective_allowable_cv,
    get_eqa_limit,
    get_spec,
    one_third_rule,
)

EXPECTED_CODES = ["K", "Na", "Cl", "Ca", "P", "Mg", "GLU", "UREA", "UA", "CREA", "TP", "ALB",
                  "TC", "TG", "HDL-C", "LDL-C", "TBIL", "ALT", "AST", "ALP", "GGT", "LDH", "CK",
                  "AMY", "FE", "HbA1c", "HbA1c-IFCC", "TSH", "FT4"]

# code: (allowable CV, allowable bias, TEa as in QC_SPEC §5)
TRANSCRIBED = {
    "K": (2.5, 2.0, "0.2 mmol/L (≤3.3); 6%"), "Na": (1.5, 1.5, "4%"), "Cl": (1.5, 1.5, "4%"),
    "Ca": (2.0, 2.0, "0.1 mmol/L (≤2); 5%"), "P": (4.0, 3.0, "10%"),
    "Mg": (5.5, 5.5, "0.12 mmol/L (≤0.8); 15%"), "GLU": (3.0, 2.0, "0.21 mmol/L (≤3); 7%"),
    "UREA": (3.0, 3.0, "0.32 mmol/L (≤4); 8%"), "UA": (4.5, 4.5, "12%"),
    "CREA": (4.0, 5.5, "6 µmol/L (≤50); 12%"), "TP": (2.0, 2.0, "5%"), "ALB": (2.5, 2.0, "6%"),
    "TC": (3.0, 4.0, "9%"), "TG": (5.0, 5.0, "14%"),
    "HDL-C": (6.0, 8.0, "0.16 mmol/L (≤0.8); 20%"), "LDL-C": (6.0, 8.0, "0.4 mmol/L (≤2); 20%"),
    "TBIL": (6.0, 5.0, "2.4 µmol/L (≤16); 15%"), "ALT": (6.0, 5.0, "6 U/L (≤40); 15%"),
    "AST": (6.0, 5.0, "6 U/L (≤40); 15%"), "ALP": (5.0, 10.0, "9 U/L (≤50); 18%"),
    "GGT": (3.5, 5.5, "4.4 U/L (≤40); 11%"), "LDH": (4.0, 4.0, "11%"), "CK": (5.5, 5.5, "15%"),
    "AMY": (4.5, 7.5, "9 U/L (≤60); 15%"), "FE": (6.5, 4.5, "2.1 µmol/L (≤14); 15%"),
    "HbA1c": (2.0, 3.0, "0.4 % (≤6.7); 6%"), "HbA1c-IFCC": (3.0, 3.6, "4.3 mmol/mol (≤50); 8.6%"),
    "TSH": (7.0, 8.0, "0.1 mU/L (≤0.5); 20%"), "FT4": (7.0, 8.0, "2.4 pmol/L (≤12); 20%"),
}


def test_wst403_table_has_every_analyte_once():
    assert [s.code for s in WST403_2024] == EXPECTED_CODES


@pytest.mark.parametrize("code", EXPECTED_CODES)
def test_wst403_values_match_qc_spec_transcription(code):
    spec = get_spec(code)
    cv, bias, tea = TRANSCRIBED[code]
    assert (spec.allowable_cv, spec.allowable_bias, str(spec.tea)) == (cv, bias, tea)
    assert (spec.source, spec.version, spec.verified) == ("WS/T 403-2024", "2024", False)
    if spec.tea.two_tier:
        assert spec.tea.abs_unit == spec.unit


def test_chinese_names_and_units():
    names = {s.code: s.name_zh for s in WST403_2024}
    assert names["K"] == "钾" and names["GLU"] == "葡萄糖" and names["CREA"] == "肌酐"
    assert names["GGT"] == "γ-谷氨酰基转移酶" and names["AST"] == "天门冬氨酸氨基转移酶"
    assert names["HbA1c"].startswith("糖化血红蛋白")
    units = {s.code: s.unit for s in WST403_2024}
    assert (units["TP"], units["ALB"], units["ALT"], units["CREA"]) == (
        "g/L", "g/L", "U/L", "µmol/L")
    assert (units["HbA1c"], units["HbA1c-IFCC"], units["TSH"], units["FT4"]) == (
        "%", "mmol/mol", "mU/L", "pmol/L")
    assert all(isinstance(s.decimals, int) and 0 <= s.decimals <= 3 for s in WST403_2024)


def test_nccl_eqa_limits_are_their_own_set():
    limits = {e.code: e.limit_pct for e in NCCL_EQA}
    assert limits == {"ALT": 16.0, "HDL-C": 30.0, "LDL-C": 30.0, "WBC": 15.0, "RBC": 6.0,
                      "Hb": 6.0, "PLT": 20.0, "PT": 15.0, "APTT": 15.0, "FIB": 20.0}
    cvs = {e.code: e.allowable_cv for e in NCCL_EQA}
    assert cvs == {"ALT": None, "HDL-C": None, "LDL-C": None, "WBC": 6.0, "RBC": 2.5,
                   "Hb": 2.0, "PLT": 8.0, "PT": 6.5, "APTT": 6.5, "FIB": 9.0}
    assert get_spec("ALT").tea.pct == 15.0  # WS/T 403 TEa is not the EQA limit


def test_lookup_is_case_insensitive_and_unknown_codes_raise():
    assert get_spec(" glu ").code == "GLU"
    assert get_eqa_limit("fib").limit_pct == 20.0
    with pytest.raises(UnknownAnalyteError):
        get_spec("XYZ")
    with pytest.raises(KeyError):
        get_eqa_limit("GLU")
    with pytest.raises(ValueError):
        get_spec("XYZ")


def test_one_third_rule_and_effective_allowable_cv():
    assert one_third_rule(15.0) == 5.0
    with pytest.raises(ValueError):
        one_third_rule(0.0)
    assert effective_allowable_cv("ALT").value == 6.0  # WS/T 403 wins
    assert effective_allowable_cv("ALT").source == "WS/T 403-2024"
    assert effective_allowable_cv("WBC").value == 6.0
    assert effective_allowable_cv("WBC").source == "regional list"


def test_one_third_rule_applies_when_no_allowable_cv_is_given():
    cv = effective_allowable_cv("ALT", specs=())
    assert cv.value == pytest.approx(16 / 3)
    assert cv.source == "1/3 of NCCL EQA limit"
    assert effective_allowable_cv("HDL-C", specs=()).value == 10.0
    with pytest.raises(UnknownAnalyteError):
        effective_allowable_cv("XYZ")


def test_specs_are_frozen_and_tea_validates():
    with pytest.raises(dataclasses.FrozenInstanceError):
        WST403_2024[0].allowable_cv = 9.0
    with pytest.raises(ValueError):
        Tea(7.0, abs_limit=0.21)
    with pytest.raises(ValueError):
        Tea(-1.0)
    assert not Tea(4.0).two_tier and str(Tea(4.0)) == "4%"
