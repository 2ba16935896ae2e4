"""Hypothesis fuzzing: any bytes give a ParseResult or a ParseError, quickly."""

import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcwx.ingest import ParseError, ParseResult, parse_bytes, template_csv, template_xlsx

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = [p.read_bytes() for p in sorted(FIXTURES.iterdir()) if p.suffix != ".md"]
SAMPLES += [template_csv(), template_xlsx()]
PREFIXES = [
    b"", b"\x02", b"\x021H|\\^&|", b"\x0b", b"\x0bMSH|^~\\&|", b"MSH|", b"H|\\^&|",
    b"PK\x03\x04", b"\xef\xbb\xbf", "项目,结果,检测日期\n".encode(), b"\xff\xfe",
]
FORMATS = [None, "astm", "hl7", "csv", "xlsx"]
FUZZ = settings(
    max_examples=250,
    deadline=3000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check(data: bytes, fmt=None) -> None:
    started = time.perf_counter()
    try:
        result = parse_bytes(data, format=fmt)
    except ParseError as exc:
        assert not exc.internal, exc.__cause__
        assert exc.message_zh
    else:
        assert isinstance(result, ParseResult)
        for issue in result.errors:
            assert issue.message_zh
    assert time.perf_counter() - started < 2.5


@FUZZ
@given(st.binary(max_size=3000), st.sampled_from(FORMATS))
def test_arbitrary_bytes(data, fmt):
    check(data, fmt)


@FUZZ
@given(st.sampled_from(PREFIXES), st.binary(max_size=2000), st.sampled_from(FORMATS))
def test_arbitrary_bytes_behind_format_magic(prefix, data, fmt):
    check(prefix + data, fmt)


@st.composite
def mutated_sample(draw):
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


@FUZZ
@given(mutated_sample(), st.sampled_from(FORMATS))
def test_mutated_samples(data, fmt):
    check(data, fmt)


@FUZZ
@given(st.text(max_size=500), st.sampled_from(["utf-8", "gb18030", "utf-16"]))
def test_arbitrary_text_as_csv(text, encoding):
    check(("项目,结果,检测日期\n" + text).encode(encoding, errors="ignore"))


def test_large_hostile_inputs_finish_quickly():
    hostile = [
        b"\x02" * 1_000_000,
        b"\x021" + b"x" * 1_000_000,
        b"\x021H|\\^&\r\x17" + (b"00\r\n\x021" + b"y" * 200 + b"\x17") * 4000,
        b"H|\\^&\r" + b"R|1|^^^A|1\r" * 50_000,
        b"\x0b" * 500_000,
        b"MSH|^~\\&|a|b|||||ORU^R01|1|P|2.5\r" + b"OBX|1|NM|A||1\r" * 20_000,
        "项目,结果,检测日期\n".encode() + b"GLU,5.1,2026-11-05\n" * 50_000,
        ("项目,结果,检测日期\n" + "\"" * 100_000).encode(),
    ]
    for data in hostile:
        started = time.perf_counter()
        check_big(data)
        assert time.perf_counter() - started < 20, data[:20]


def check_big(data: bytes) -> None:
    try:
        parse_bytes(data)
    except ParseError as exc:
        assert not exc.internal, exc.__cause__
