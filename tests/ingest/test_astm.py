"""ASTM E1394 / LIS2-A2 parsing on the senaite.astm captures and variants built from them."""

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from qcwx.ingest import ParseError, parse_bytes
from qcwx.ingest.formats.astm import split_records

FIXTURES = Path(__file__).parent / "fixtures"
STX, ETX, ETB, ENQ, EOT, ACK = b"\x02", b"\x03", b"\x17", b"\x05", b"\x04", b"\x06"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def frame(number: int, text: bytes, last: bool = True) -> bytes:
    end = ETX if last else ETB
    body = str(number % 8).encode() + text + end
    return STX + body + f"{sum(body) % 256:02X}".encode() + b"\r\n"


def lis1a(records: list[str], size: int = 240) -> bytes:
    """Frame records the textbook way: one record per frame chain, ETB every ``size`` bytes."""
    out, number = [ENQ], 1
    for record in records:
        data = record.encode("latin-1") + b"\r"
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        for i, chunk in enumerate(chunks):
            out.append(frame(number, chunk, last=i == len(chunks) - 1))
            number += 1
    out.append(EOT)
    return b"".join(out)


def without_frames(records):
    return [replace(r, source=replace(r.source, frame=None)) for r in records]


YUMIZEN = "senaite_yumizen_h500.astm"
PATIENT_SAMPLES = {
    "senaite_sysmex_xn550.astm": 37,
    "senaite_sysmex_xp100.astm": 20,
    "senaite_cobas_c311.astm": 7,
    "senaite_pentra_xlr.astm": 21,
    "senaite_abbott_architect.astm": 3,
}


def by_code(records):
    return {r.test_code: r for r in records}


# ------------------------------------------------------------------ the QC sample


def test_yumizen_qc_sample_yields_21_qc_results_with_targets():
    result = parse_bytes(load(YUMIZEN))
    assert result.format == "astm"
    assert result.errors == ()
    assert len(result.records) == 21
    assert all(r.is_qc for r in result.records)
    wbc = by_code(result.records)["WBC"]
    assert (wbc.value, wbc.value_text, wbc.unit) == (8.30, "8.30", "10E3/uL")
    assert (wbc.target_low, wbc.target_high) == (7.30, 9.30)
    assert wbc.loinc == "6690-2"


def test_yumizen_qc_context_level_control_sample_and_verdict():
    records = parse_bytes(load(YUMIZEN)).records
    for record in records:
        assert record.level == "MEDIUM"
        assert record.level_norm == "M"
        assert record.control_name == "ABXdifftrol N"
        assert record.sample_id == "PX440N"
        assert record.instrument_flags == ("CONTROL_FAILED^^PLT_ABOVE_TOLERANCE",)
        assert record.instrument == "H500 910YOXH02826 2.2.2.2b"
        assert record.measured_at == datetime(2023, 3, 29, 11, 6, 31)


def test_yumizen_hgb_and_plt_out_of_range_values():
    codes = by_code(parse_bytes(load(YUMIZEN)).records)
    assert (codes["HGB"].value, codes["HGB"].unit, codes["HGB"].loinc) == (13.3, "g/dL", "718-7")
    plt = codes["PLT"]
    assert (plt.value, plt.target_low, plt.target_high) == (308.0, 231.0, 291.0)
    assert plt.value > plt.target_high


def test_yumizen_record_positions_name_message_record_and_frame():
    wbc = by_code(parse_bytes(load(YUMIZEN)).records)["WBC"]
    assert (wbc.source.format, wbc.source.message, wbc.source.segment) == ("astm", 1, "R")
    assert wbc.source.frame == 18
    assert wbc.raw.startswith("R|9|^^^WBC^6690-2|8.30|")


# ------------------------------------------------------------------ patient samples


@pytest.mark.parametrize(("name", "count"), sorted(PATIENT_SAMPLES.items()))
def test_patient_samples_yield_results_but_no_qc(name, count):
    result = parse_bytes(load(name))
    assert result.format == "astm"
    assert result.errors == ()
    assert len(result.records) == count
    assert result.qc_records == ()


def test_sysmex_space_padded_values_are_stripped():
    codes = by_code(parse_bytes(load("senaite_sysmex_xp100.astm")).records)
    assert (codes["WBC"].value_text, codes["WBC"].value) == ("5.5", 5.5)
    assert codes["PLT"].value == 170.0
    assert codes["WBC"].sample_id == "113"


def test_cobas_numeric_codes_drop_the_dilution_suffix():
    records = parse_bytes(load("senaite_cobas_c311.astm")).records
    assert [r.test_code for r in records] == ["685", "687", "712", "158", "735", "717", "690"]
    assert records[0].value == 22.4 and records[0].unit == "U/l"
    assert records[0].sample_id == "11625"
    assert records[0].measured_at == datetime(2024, 2, 3, 13, 20, 11)


def test_pentra_dashes_are_kept_as_text_without_a_value():
    codes = by_code(parse_bytes(load("senaite_pentra_xlr.astm")).records)
    assert codes["BAS#"].value_text == "-----"
    assert codes["BAS#"].value is None and codes["BAS#"].censored is None
    assert codes["BAS#"].result_status == "X"
    assert codes["WBC"].loinc == "804-5"
    assert codes["WBC"].instrument_flags == (
        "Alarm_WBC^LMNE-^BASO+^LL^NL^LN^NO^SL1",
        "LARGE IMMATURE CELL^NRBCs",
    )


def test_abbott_censored_value_reagent_lot_and_name():
    records = parse_bytes(load("senaite_abbott_architect.astm")).records
    first = records[0]
    assert (first.test_code, first.test_name) == ("0021", "B-hCG")
    assert (first.value_text, first.value, first.censored) == ("< 1.20", None, "<")
    assert first.reagent_lot == "47331M100"
    assert first.qc_lot is None and not first.is_qc
    assert [r.value_text for r in records] == ["< 1.20", "NEGATIVE", "9245"]


# ------------------------------------------------------------------ framing


@pytest.mark.parametrize("name", [YUMIZEN, *PATIENT_SAMPLES])
def test_framed_and_bare_records_are_identical(name):
    framed = parse_bytes(load(name))
    for separator in ("\r", "\r\n", "\n"):
        bare = parse_bytes(separator.join(split_records(load(name))).encode("latin-1"))
        assert bare.format == "astm"
        assert without_frames(bare.records) == without_frames(framed.records)


@pytest.mark.parametrize("name", [YUMIZEN, *PATIENT_SAMPLES])
def test_textbook_lis1a_framing_with_etb_continuations_gives_the_same_records(name):
    records = split_records(load(name))
    reframed = lis1a(records, size=64)
    assert ETB in reframed
    result = parse_bytes(reframed)
    assert result.errors == ()
    assert without_frames(result.records) == without_frames(parse_bytes(load(name)).records)


def test_link_noise_between_frames_is_ignored():
    records = split_records(load(YUMIZEN))
    noisy = lis1a(records).replace(b"\r\n\x02", b"\r\n\x06\x05\x02")
    result = parse_bytes(ACK + ENQ + noisy + EOT)
    assert result.errors == ()
    assert len(result.qc_records) == 21


def _corrupt_frame(data: bytes, marker: bytes, *, checksum: bool) -> bytes:
    at = data.index(marker)
    end = data.index(ETX, at)
    if checksum:
        wrong = b"00" if data[end + 1 : end + 3] != b"00" else b"01"
        return data[: end + 1] + wrong + data[end + 3 :]
    return data[:at] + marker.replace(b"8.30", b"9.30") + data[at + len(marker) :]


@pytest.mark.parametrize("checksum", [True, False])
def test_bad_checksum_drops_only_that_frame_and_names_it(checksum):
    data = _corrupt_frame(load(YUMIZEN), b"R|9|^^^WBC^6690-2|8.30", checksum=checksum)
    result = parse_bytes(data)
    assert len(result.records) == 20
    assert "WBC" not in by_code(result.records)
    [issue] = result.errors
    assert issue.position.frame == 18
    assert issue.field == "checksum"
    assert "第 18 帧" in issue.message_zh and "校验和错误" in issue.message_zh


def test_bad_checksum_in_a_continuation_frame_drops_the_whole_record():
    records = split_records(load(YUMIZEN))
    data = lis1a(records, size=20)
    marker = data.index(b"^^^WBC")
    start = data.rindex(STX, 0, marker)
    end = data.index(ETB, start)
    bad = data[: end + 1] + (b"00" if data[end + 1 : end + 3] != b"00" else b"01") + data[end + 3 :]
    result = parse_bytes(bad)
    codes = by_code(result.records)
    assert "WBC" not in codes and len(result.records) == 20
    assert len(result.errors) == 1 and "校验和错误" in result.errors[0].message_zh


def test_retransmitted_frame_after_bad_checksum_is_accepted():
    good = frame(5, b"R|1|^^^GLU|5.5|mmol/L||N||F\r")
    bad = good[:-4] + b"00\r\n"
    head = frame(1, b"H|\\^&|||X|||||||Q\r") + frame(2, b"P|1\r") + frame(3, b"O|1|QC1\r")
    result = parse_bytes(head + bad + good + frame(6, b"L|1|N\r"))
    assert result.errors == ()
    assert [r.value for r in result.records] == [5.5]


def test_truncated_last_frame_is_reported():
    data = load("senaite_pentra_xlr.astm")
    cut = data[: data.rindex(ETX)]
    result = parse_bytes(cut)
    assert len(result.records) == 21
    assert any("帧不完整" in e.message_zh for e in result.errors)


# ------------------------------------------------------------------ QC conventions


def _bare(*records: str) -> bytes:
    return "\r\n".join(records).encode()


def test_order_action_code_q_marks_qc():
    data = _bare(
        "H|\\^&|||c311^1|||||host|RSUPL^REAL|P|1",
        "P|1",
        "O|1|QC-N1||^^^685/|R||||||Q||||^^^^^^^|||||||||||F",
        "R|1|^^^685/|22.4|U/l||N||F|||||P1",
        "L|1|N",
    )
    [record] = parse_bytes(data).records
    assert record.is_qc and record.test_code == "685"


def test_patient_order_in_p_mode_is_not_qc():
    data = _bare("H|\\^&|||X|||||||P", "P|1", "O|1|123456", "R|1|^^^GLU|5.5|mmol/L", "L|1")
    [record] = parse_bytes(data).records
    assert not record.is_qc


def test_sample_id_pattern_option_marks_qc():
    data = _bare("H|\\^&|||X|||||||P", "P|1", "O|1|KZ-12", "R|1|^^^GLU|5.5|mmol/L", "L|1")
    assert not parse_bytes(data).records[0].is_qc
    result = parse_bytes(data, options={"qc_sample_id_pattern": r"^KZ-"})
    assert result.records[0].is_qc


def test_abbott_control_lot_component_marks_qc_and_gives_the_lot():
    data = _bare(
        "H|\\^&|||ARCHITECT^1.00^123456789^H1P1O1R1C1Q1L1|||||||P|1|20260101080000",
        "P|1",
        "O|1|CTL_L||^^^16^TSH^UNDILUTED^P|R||||||Q",
        "R|1|^^^16^TSH^UNDILUTED^P^12345HN00^01234^LOT77^F|0.52|uIU/mL||||F||||20260101081500",
        "L|1|N",
    )
    [record] = parse_bytes(data).records
    assert record.is_qc and record.qc_lot == "LOT77" and record.reagent_lot == "12345HN00"
    assert record.measured_at == datetime(2026, 1, 1, 8, 15)


def test_non_numeric_qc_result_is_kept_and_reported():
    data = _bare("H|\\^&|||X|||||||Q", "P|1", "O|1|C1", "R|1|^^^GLU|*****|mmol/L", "L|1")
    result = parse_bytes(data)
    assert result.records[0].value is None
    assert "不是数值" in result.errors[0].message_zh


def test_custom_delimiters_and_escapes_are_honoured():
    data = _bare("H!~#$!!!X!!!!!!!Q", "P!1", "O!1!C1", "R!1!##GLU$S$X!5.5!mmol/L", "L!1")
    [record] = parse_bytes(data).records
    assert record.test_code == "GLU#X" and record.value == 5.5


def test_records_without_header_are_parsed_with_defaults_and_reported():
    data = _bare("H|\\^&|||X|||||||Q", "P|1") + b"\r\nL|1\r\nR|1|^^^GLU|5.5|mmol/L\r\n"
    result = parse_bytes(data)
    assert len(result.records) == 1
    assert any("缺少消息头" in e.message_zh for e in result.errors)


def test_two_messages_are_numbered():
    one = split_records(load(YUMIZEN))
    result = parse_bytes(_bare(*one, *one))
    assert len(result.records) == 42
    assert {r.source.message for r in result.records} == {1, 2}


def test_forced_astm_on_non_astm_raises_or_reports():
    with pytest.raises(ParseError):
        parse_bytes(b"", format="astm")
    result = parse_bytes(b"hello world", format="astm")
    assert result.records == () and result.errors
