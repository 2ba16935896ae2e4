"""HL7 v2 parsing: the Mindray MSH-16 QC dialect, OBX-based QC, MLLP and separators."""

from datetime import date, datetime
from pathlib import Path

import pytest

from qcwx.ingest import parse_bytes

FIXTURES = Path(__file__).parent / "fixtures"
QC = "mindray_bs200e_qc_oru_r01.mllp"
NEGATIVE = "mindray_bs200e_patient_oru_r01_NEGATIVE.mllp"
TWO_LEVELS = "SYNTHETIC_mindray_two_levels.hl7"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def unframe(data: bytes) -> bytes:
    return data.replace(b"\x0b", b"").replace(b"\x1c", b"").strip()


def mllp(message: bytes) -> bytes:
    return b"\x0b" + message + b"\x1c\r"


def test_mindray_qc_message_gives_one_qc_record_from_obr():
    result = parse_bytes(load(QC))
    assert result.format == "hl7"
    assert result.errors == ()
    [record] = result.records
    assert record.is_qc
    assert record.test_code == "test1"
    assert record.control_name == "QUAL1"
    assert record.qc_lot == "1111"
    assert record.qc_expiry == date(2008, 7, 20)
    assert (record.level, record.level_norm) == ("H", "H")
    assert (record.target_mean, record.target_sd) == (5.0, 2.0)
    assert (record.value_text, record.value, record.unit) == ("0.11029", 0.11029, "g/ml")
    assert record.measured_at == datetime(2007, 7, 20, 12, 1, 43)
    assert record.instrument == "Mindray BS-200E"
    assert (record.source.message, record.source.index, record.source.segment) == (1, 2, "OBR")


def test_mindray_patient_message_is_not_qc():
    result = parse_bytes(load(NEGATIVE))
    assert result.errors == ()
    assert result.qc_records == ()
    [record] = result.records
    assert (record.test_code, record.test_name, record.value) == ("2", "test2", 5.0)


@pytest.mark.parametrize("name", [QC, NEGATIVE])
@pytest.mark.parametrize("separator", [b"\r", b"\n", b"\r\n"])
def test_with_and_without_mllp_and_any_segment_separator_give_the_same_records(name, separator):
    framed = parse_bytes(load(name))
    bare = unframe(load(name)).replace(b"\r", separator)
    result = parse_bytes(bare)
    assert result.format == "hl7"
    assert result.records == framed.records


def test_synthetic_two_levels_in_one_obr_give_two_records():
    result = parse_bytes(load(TWO_LEVELS))
    assert result.errors == ()
    low, high = result.records
    assert (low.level, low.control_name, low.qc_lot, low.value) == ("L", "QUAL1", "1111", 5.12)
    assert (low.target_mean, low.target_sd) == (5.0, 0.5)
    assert (high.level, high.control_name, high.qc_lot, high.value) == ("H", "QUAL2", "2222", 14.8)
    assert (high.target_mean, high.target_sd) == (15.0, 1.2)
    assert low.unit == high.unit == "mmol/L"
    assert (low.source.repeat, high.source.repeat) == (1, 2)


def test_levels_repeated_with_tilde_are_split_too():
    data = load(TWO_LEVELS).replace(b"^", b"~").replace(b"ORU~R01", b"ORU^R01")
    data = data.replace(b"MSH|~~\\&", b"MSH|^~\\&").replace(b"Mindray~BS-200E", b"Mindray^BS-200E")
    result = parse_bytes(data)
    assert [r.level for r in result.records] == ["L", "H"]
    assert [r.value for r in result.records] == [5.12, 14.8]


def test_several_mllp_messages_in_one_stream_are_numbered():
    data = load(QC) + load(NEGATIVE) + mllp(unframe(load(TWO_LEVELS)))
    result = parse_bytes(data)
    assert [r.source.message for r in result.records] == [1, 2, 3, 3]
    assert [r.is_qc for r in result.records] == [True, False, True, True]


def test_missing_obr_is_a_per_message_error_in_chinese():
    data = mllp(b"MSH|^~\\&|Mindray|BS-200E|||20070719145353||ORU^R01|1|P|2.3.1||||2||ASCII\r")
    result = parse_bytes(load(QC) + data)
    assert len(result.records) == 1
    [issue] = result.errors
    assert issue.position.message == 2 and issue.field == "OBR"
    assert "缺少 OBR 段" in issue.message_zh


def test_unreadable_message_does_not_stop_the_next_one():
    broken = mllp(b"MSH|^\rOBR|1")
    result = parse_bytes(broken + load(QC))
    assert len(result.qc_records) == 1
    assert result.errors and result.errors[0].position.message == 1


def test_bad_numbers_in_obr_are_reported_but_the_record_is_kept():
    data = load(QC).replace(b"|5.000000|2.000000|0.11029|", b"|5,0x|2.0|abc|")
    result = parse_bytes(data)
    [record] = result.records
    assert record.target_mean is None and record.value is None
    messages = " ".join(e.message_zh for e in result.errors)
    assert "靶值“5,0x”不是有效数字" in messages and "“abc”不是数值" in messages


OUL_QC = (
    b"MSH|^~\\&|LAB|ANALYZER|LIS|HOSP|20261105083000+0800||OUL^R22^OUL_R22|42|P|2.5.1\r"
    b"SPM|1|QC-L1-2611||SER|||||||Q\r"
    b"OBR|1||QC-L1-2611|GLU^Glucose\r"
    b"OBX|1|NM|2345-7^Glucose^LN||5.6|mmol/L^mmol/L|5.0-6.0|N|||F|||20261105082500||||BS800^M1\r"
    b"NTE|1||rerun\r"
    b"OBX|2|SN|CRE^Creatinine||<^20|umol/L||L|||F\r"
)


def test_oul_r22_with_specimen_role_q_is_qc_from_obx():
    result = parse_bytes(OUL_QC)
    glu, cre = result.records
    assert glu.is_qc and cre.is_qc
    assert (glu.test_code, glu.test_name, glu.loinc) == ("2345-7", "Glucose", "2345-7")
    assert (glu.value, glu.unit, glu.target_low, glu.target_high) == (5.6, "mmol/L", 5.0, 6.0)
    assert glu.measured_at == datetime(2026, 11, 5, 8, 25)
    assert glu.instrument == "BS800" and glu.sample_id == "QC-L1-2611"
    assert glu.instrument_flags == ("rerun",)
    assert (cre.value_text, cre.value, cre.censored) == ("<20", None, "<")
    assert any("不是数值" in e.message_zh for e in result.errors)


def test_oul_with_patient_specimen_is_not_qc():
    data = OUL_QC.replace(b"||||||Q\r", b"||||||P\r").replace(b"QC-L1-2611", b"P000123")
    assert parse_bytes(data).qc_records == ()


def test_unsupported_message_type_is_reported():
    data = b"MSH|^~\\&|A|B|||20261105||ADT^A01|1|P|2.5\rPID|1\r"
    result = parse_bytes(data)
    assert result.records == ()
    assert "不支持的消息类型 ADT^A01" in result.errors[0].message_zh


def test_gb18030_text_is_decoded():
    data = (
        "MSH|^~\\&|迈瑞|BS-200E|||20070720120202||ORU^R01|1|P|2.3.1||||2||GB18030\r"
        "OBR|1|1|葡萄糖|Mindray^BS-200E||20070720120143|||||||质控品一|1111|20080720||H|5|2|4.9|mmol/L\r"
    ).encode("gb18030")
    [record] = parse_bytes(data).records
    assert record.test_code == "葡萄糖" and record.control_name == "质控品一"
