"""QC markers of each dialect, the sample-id pattern and the analyser named by each parser."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from qcwx.ingest import ParseError, parse_bytes
from qcwx.ingest.formats.dialects import (
    QcMarker,
    apply_lab_pattern,
    compile_qc_pattern,
    markers,
    register_marker,
)
from qcwx.ingest.instruments import match_instruments

FIXTURES = Path(__file__).parent / "fixtures"
HEMOSCREEN = "SYNTHETIC_hemoscreen_lqc.hl7"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def astm(*records: str) -> bytes:
    return ("\r".join(records) + "\r").encode()


# ---------------------------------------------------------------- the registry
def test_every_marker_names_its_documentation_source():
    names = {m.name for m in markers()}
    assert {"hl7.mindray_msh16", "hl7.hemoscreen_obr4", "hl7.specimen_role",
            "astm.processing_id", "astm.action_code", "astm.specimen_descriptor",
            "astm.abbott_control_lot"} <= names
    assert all(len(m.source) > 30 for m in markers())
    assert {m.protocol for m in markers("astm")} == {"astm"}


def test_a_marker_without_a_source_is_refused():
    with pytest.raises(ValueError, match="document"):
        register_marker(QcMarker(name="x", protocol="hl7", field="OBR-4", source=""))


# ---------------------------------------------------------------- HL7 markers
def test_hemoscreen_lqc_is_qc_with_control_id_range_and_serial():
    result = parse_bytes(load(HEMOSCREEN))
    assert result.errors == ()
    wbc, hgb = result.records
    assert wbc.is_qc and hgb.is_qc and wbc.qc_marker == "hl7.hemoscreen_obr4"
    assert (wbc.test_code, wbc.value, wbc.unit) == ("WBC", 7.2, "10*3/uL")
    assert (wbc.sample_id, wbc.control_name, wbc.level) == ("HSC-N-2611", "HSC-N-2611",
                                                             "HSC-N-2611")
    assert (wbc.target_low, wbc.target_high) == (6.5, 8.1)
    assert wbc.instrument == "HS100-0421"  # OBX-15, the device serial


def test_hemoscreen_patient_obs_is_not_qc_even_with_a_qc_looking_id():
    data = load(HEMOSCREEN).replace(b"|LQC|", b"|OBS|").replace(b"HSC-N-2611", b"QC-2611")
    result = parse_bytes(data)
    assert result.qc_records == ()
    assert {r.qc_marker for r in result.records} == {"hl7.hemoscreen_obr4"}
    assert all(r.target_low is None and r.reference_range for r in result.records)


def test_hemoscreen_proficiency_sample_is_not_internal_qc():
    result = parse_bytes(load(HEMOSCREEN).replace(b"|LQC|", b"|PRF|"))
    assert result.qc_records == () and len(result.records) == 2


def test_mindray_msh16_marks_qc_and_patient_explicitly():
    qc = parse_bytes(load("mindray_bs200e_qc_oru_r01.mllp")).records[0]
    patient = parse_bytes(load("mindray_bs200e_patient_oru_r01_NEGATIVE.mllp")).records[0]
    assert (qc.is_qc, qc.qc_marker) == (True, "hl7.mindray_msh16")
    assert (patient.is_qc, patient.qc_marker) == (False, "hl7.mindray_msh16")


def test_generic_hl7_obr4_is_the_test_not_the_analyser():
    data = (b"MSH|^~\\&|LIS|LAB|QCWX|X|20261105083000||ORU^R01|1|P|2.5.1\r"
            b"OBR|1||QC-1|CBC^Blood count\r"
            b"OBX|1|NM|WBC||7.1|10*3/uL|||||F\r")
    [record] = parse_bytes(data).records
    assert record.is_qc and record.qc_marker == "sample_id_pattern"
    assert record.instrument == "LIS LAB"  # MSH-3/MSH-4, never OBR-4 "CBC Blood count"


# ---------------------------------------------------------------- ASTM markers
@pytest.mark.parametrize("header, order, marker", [
    ("H|\\^&|||X|||||||Q", "O|1|S1", "astm.processing_id"),
    ("H|\\^&|||X|||||||P", "O|1|S1||^^^K|R||||||Q", "astm.action_code"),
    ("H|\\^&|||X|||||||P", "O|1|S1||^^^K|R||||||||||CTRL^^CTRL HIGH", "astm.specimen_descriptor"),
])
def test_astm_markers_each_mark_qc(header, order, marker):
    [record] = parse_bytes(astm(header, "P|1", order, "R|1|^^^K|4.5|mmol/L", "L|1")).records
    assert (record.is_qc, record.qc_marker) == (True, marker)


def test_yumizen_header_processing_id_is_the_marker():
    records = parse_bytes(load("senaite_yumizen_h500.astm")).records
    assert {r.qc_marker for r in records} == {"astm.processing_id"}


def test_astm_analyser_is_r14_then_o25_then_the_sender():
    head = "H|\\^&|||cobas c702^1.0^C702-201866025|||||||Q"
    order = "O|1|S1||^^^K|R" + "|" * 19 + "MOD-2"
    plain = parse_bytes(astm(head, "P|1", "O|1|S1", "R|1|^^^K|4.5|mmol/L", "L|1")).records[0]
    by_order = parse_bytes(astm(head, "P|1", order, "R|1|^^^K|4.5|mmol/L", "L|1")).records[0]
    by_result = parse_bytes(astm(head, "P|1", order, "R|1|^^^K|4.5|mmol/L" + "|" * 9 + "E-7",
                                 "L|1")).records[0]
    assert plain.instrument == "cobas c702 1.0 C702-201866025"
    assert by_order.instrument == "MOD-2" and by_result.instrument == "E-7"


# ---------------------------------------------------------------- the sample-id pattern
@pytest.mark.parametrize("pattern, why", [
    ("(", "有效"), ("x" * 201, "过长"), ("(a+)+$", "嵌套"), ("^", "空样本号"), ("", "非空"),
])
def test_bad_qc_patterns_are_refused_in_chinese(pattern, why):
    with pytest.raises(ParseError, match=why):
        compile_qc_pattern(pattern)


def test_a_lab_pattern_turns_undecided_records_into_qc_with_a_level():
    data = astm("H|\\^&|||X|||||||P", "P|1", "O|1|KZ-H-7", "R|1|^^^K|6.1|mmol/L",
                "O|2|12345", "R|1|^^^K|4.0|mmol/L", "L|1")
    undecided = parse_bytes(data).records
    assert [r.is_qc for r in undecided] == [False, False]
    marked = apply_lab_pattern(undecided, compile_qc_pattern(r"^KZ-(?P<level>[LH])-"))
    assert [(r.is_qc, r.level, r.qc_marker) for r in marked] == [
        (True, "H", "sample_id_pattern"), (False, None, None)]


def test_a_lab_pattern_never_overrides_an_explicit_patient_marker():
    data = load(HEMOSCREEN).replace(b"|LQC|", b"|OBS|")
    marked = apply_lab_pattern(parse_bytes(data).records, compile_qc_pattern("HSC"))
    assert not any(r.is_qc for r in marked)


# ---------------------------------------------------------------- naming the analyser
def _inst(id_, maker, model, serial=None, name=None):
    return SimpleNamespace(id=id_, maker=maker, model=model, serial=serial, name=name)


def test_instruments_match_by_serial_then_name_then_model_never_by_part_of_a_word():
    c702 = _inst(1, "罗氏", "cobas c702", "C702-201866025", "生化分析仪")
    c501 = _inst(2, "罗氏", "cobas c501", "C501-201641179", "急诊生化分析仪")
    bs800 = _inst(3, "迈瑞", "BS-800", "BS8-1")
    pool = [c702, c501, bs800]
    assert match_instruments("cobas c702^1.0^C702-201866025", pool) == ([c702], "serial")
    assert match_instruments("急诊生化分析仪", pool) == ([c501], "name")
    assert match_instruments("Roche cobas c501", pool) == ([c501], "model")
    assert match_instruments("COBAS-C702", pool) == ([c702], "model")
    assert match_instruments("bs800", pool) == ([bs800], "model")
    assert match_instruments("BS-8000", pool) == ([], None)
    assert match_instruments("罗氏", pool) == ([], None)  # a maker alone names no unit
    assert match_instruments("生化", pool) == ([], None)
