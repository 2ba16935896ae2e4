"""Format detection and the registry (the parsers' purity: test_purity.py)."""

from pathlib import Path

import pytest

from qcwx.ingest import ParseError, ParseResult, format_names, parse_bytes, register, template_xlsx
from qcwx.ingest.formats.registry import _FORMATS, detect_format

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x0bMSH|^~\\&|x\r\x1c\r", "hl7"),
        (b"MSH|^~\\&|x|y\r", "hl7"),
        (b"\r\nMSH|^~\\&|x|y\n", "hl7"),
        (b"\x02" + b"1H|\\^&\r\x03AB\r\n", "astm"),
        (b"\x05\x021H|\\^&\r\x03AB\r\n", "astm"),
        (b"H|\\^&|||X\rL|1\r", "astm"),
        (b"PK\x03\x04rest", "xlsx"),
        ("项目,结果,日期\n".encode(), "csv"),
        ("项目,结果,日期\n".encode("gbk"), "csv"),
    ],
)
def test_detection(data, expected):
    assert detect_format(data) == expected


def test_all_shared_samples_are_detected_by_content():
    for path in FIXTURES.iterdir():
        if path.suffix in (".astm", ".mllp", ".hl7"):
            expected = "astm" if path.suffix == ".astm" else "hl7"
            assert parse_bytes(path.read_bytes()).format == expected, path.name


def test_binary_garbage_is_refused_in_chinese():
    with pytest.raises(ParseError, match="无法识别文件格式"):
        parse_bytes(bytes(range(32)) * 10)


@pytest.mark.parametrize("data", [b"", b"   \r\n", "".encode()])
def test_empty_upload_raises(data):
    with pytest.raises(ParseError, match="文件为空"):
        parse_bytes(data)


def test_unknown_format_and_unknown_option_raise():
    with pytest.raises(ParseError, match="不支持的格式"):
        parse_bytes(b"x", format="pdf")
    with pytest.raises(ParseError, match="未知的导入选项"):
        parse_bytes(b"x", options={"colums": {}})


def test_forcing_a_format_skips_detection():
    data = (FIXTURES / "mindray_bs200e_qc_oru_r01.mllp").read_bytes()
    assert parse_bytes(data, format="HL7").format == "hl7"
    assert parse_bytes(template_xlsx(), format="xlsx").records


def test_str_input_is_accepted_and_other_types_are_refused():
    assert parse_bytes("项目,结果,日期\nGLU,5,2026-11-05\n").records[0].value == 5.0
    with pytest.raises(ParseError):
        parse_bytes(12345)


def test_register_adds_a_format_and_internal_failures_become_parse_errors():
    def boom(data, options):
        raise KeyError("bug")

    register("boom", lambda d: d.startswith(b"BOOM"), boom, priority=1)
    try:
        assert "boom" in format_names() and format_names()[0] == "boom"
        with pytest.raises(ParseError) as info:
            parse_bytes(b"BOOM!")
        assert info.value.internal
        register("json-ish", lambda d: False, lambda d, o: ParseResult("json-ish"), priority=50)
        assert parse_bytes(b"{}", format="json-ish").format == "json-ish"
    finally:
        _FORMATS.pop("boom", None)
        _FORMATS.pop("json-ish", None)


def test_issue_positions_read_in_chinese():
    result = parse_bytes(b"MSH|^~\\&|A|B|||20261105||ORU^R01|1|P|2.5\r")
    assert str(result.errors[0]) == "第 1 条消息：缺少 OBR 段，该消息没有可读取的结果"
    assert result.errors[0].position.describe() == "第 1 条消息"

