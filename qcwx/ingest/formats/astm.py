"""ASTM E1394 / CLSI LIS2-A2 records, framed (LIS1-A, :mod:`.astm_transport`) or bare.

The measurement time is R-13, else R-12, O-23, O-8, O-7 and finally H-14. The analyser
(``instrument``) is R-14 instrument identification, else O-25 instrument section id, else
the H-5 sender name (its components — name, software version, serial — joined by spaces).

QC identification is the ASTM markers of :mod:`qcwx.ingest.formats.dialects`: header processing ID
H-12 ``Q``; order action code O-12 ``Q``; specimen descriptor O-16 whose first component
is ``CTRL``/``QC``/``CONTROL`` (the level is then the last component without that word:
``CTRL^^CTRL MEDIUM`` → ``MEDIUM``); an Abbott ARCHITECT control lot (10th component of
the test id). Failing those, a sample id matching ``qc_sample_id_pattern``. Everything else
is returned with ``is_qc=False``.

Field numbers below are the standard's 1-based ones (``R-4`` is ``fields[3]``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from qcwx.numbers import normalize_level, parse_compact_datetime, parse_range, parse_value

from .astm_transport import decode, deframe, detect, split_records
from .dialects import SAMPLE_ID_MARKER, classify, compile_qc_pattern, sample_id_level
from .records import IssueLog, ParsedRecord, ParseError, ParseResult, SourceRef, truncate_raw
from .registry import register

__all__ = ["deframe", "detect", "parse", "split_records"]

logger = logging.getLogger(__name__)

_RECORD_TYPES = frozenset("HPOR CQLMS".replace(" ", ""))
_QC_DESCRIPTORS = frozenset({"CTRL", "QC", "CONTROL", "CONTROLS", "QCTRL"})
_LOINC = re.compile(r"\d{1,7}-\d")
_ROCHE_CODE = re.compile(r"(\d+)/\S*")


# ---------------------------------------------------------------- record layer


@dataclass(frozen=True)
class _Delims:
    field: str = "|"
    repeat: str = "\\"
    component: str = "^"
    escape: str = "&"

    def unescape(self, text: str) -> str:
        esc = re.escape(self.escape)
        table = {"F": self.field, "S": self.component, "R": self.repeat, "E": self.escape}

        def swap(match: re.Match[str]) -> str:
            code = match.group(1)
            if code[0] in "Xx":
                try:
                    return bytes.fromhex(code[1:]).decode("latin-1")
                except ValueError:
                    return match.group(0)
            return table[code]

        return re.sub(f"{esc}([FSRE]|[Xx][0-9A-Fa-f]{{2,64}}){esc}", swap, text)

    def components(self, text: str) -> list[str]:
        first = text.split(self.repeat)[0] if self.repeat else text
        return [self.unescape(c) for c in first.split(self.component)]


@dataclass
class _Message:
    index: int
    delims: _Delims = field(default_factory=_Delims)
    instrument: str | None = None
    processing_id: str = ""
    sent_at: datetime | None = None
    abbott: bool = False
    count: int = 0


@dataclass
class _Order:
    sample_id: str | None = None
    marks: dict[str, str] = field(default_factory=dict)
    level: str | None = None
    instrument: str | None = None
    requested_at: datetime | None = None
    collected_at: datetime | None = None
    reported_at: datetime | None = None
    comments: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Result:
    fields: list[str]
    where: SourceRef
    line: str
    comments: list[str] = field(default_factory=list)


def _get(fields: list[str], number: int) -> str:
    """Return ASTM field ``number`` (1-based, as in the standard) or ''."""
    return fields[number - 1] if 0 < number <= len(fields) else ""


class _Parser:
    def __init__(self, options: Mapping[str, Any]) -> None:
        self.issues = IssueLog("astm")
        self.records: list[ParsedRecord] = []
        self.encoding = options.get("encoding")
        self.qc_sample = _compile_pattern(options.get("qc_sample_id_pattern"))
        self.msg: _Message | None = None
        self.messages = 0
        self.patient_comments: list[tuple[str, str]] = []
        self.order: _Order | None = None
        self.result: _Result | None = None
        self.last_kind = ""

    def run(self, data: bytes) -> ParseResult:
        lines = deframe(data, self.issues)
        for raw, frame in lines:
            self.line(decode(raw, self.encoding), frame)
        self.finish_result()
        if not self.messages and not self.records and not lines:
            first = self.issues.items[0].message_zh if self.issues.items else ""
            raise ParseError("ASTM 文件中没有任何记录" + (f"（{first}）" if first else ""))
        return self.issues.result(self.records)

    # -- dispatch ----------------------------------------------------------------

    def line(self, text: str, frame: int | None) -> None:
        text = text.strip("\x00\r\n")
        if len(text) >= 3 and text[0] in "01234567" and text[1].upper() in _RECORD_TYPES:
            if not text[2].isalnum():
                text = text[1:]
        if not text.strip():
            return
        kind = text[0].upper()
        if kind == "H":
            self.finish_result()
            self.start_message(text, frame)
            return
        msg = self.current_message(frame)
        msg.count += 1
        where = SourceRef("astm", message=msg.index, index=msg.count, segment=kind, frame=frame)
        if kind not in _RECORD_TYPES or (len(text) > 1 and text[1] != msg.delims.field):
            self.finish_result()
            self.issues.add(where, None, f"无法识别的记录“{truncate_raw(text, 30)}”，已忽略")
            return
        fields = text.split(msg.delims.field)
        if kind == "C":
            self.comment(fields, msg)
            return
        self.finish_result()
        self.last_kind = kind
        if kind == "P":
            self.order = None
            self.patient_comments = []
        elif kind == "O":
            self.start_order(fields, msg, where)
        elif kind == "R":
            self.result = _Result(fields, where, text)
        elif kind == "L":
            self.msg = None

    def current_message(self, frame: int | None) -> _Message:
        if self.msg is None:
            self.messages += 1
            self.msg = _Message(self.messages)
            where = SourceRef("astm", message=self.messages, frame=frame)
            self.issues.add(where, "H", "缺少消息头（H 记录），按默认分隔符解析")
            self.order = None
            self.patient_comments = []
        return self.msg

    def start_message(self, text: str, frame: int | None) -> None:
        self.messages += 1
        msg = _Message(self.messages, count=1)
        self.msg, self.order, self.patient_comments, self.last_kind = msg, None, [], "H"
        where = SourceRef("astm", message=msg.index, index=1, segment="H", frame=frame)
        delims = text[1:5]
        if len(delims) == 4 and len(set(delims)) == 4 and not any(c.isalnum() for c in delims):
            msg.delims = _Delims(*delims)
        else:
            self.issues.add(where, "H-2", "消息头中的分隔符定义无效，按默认分隔符解析")
        fields = text.split(msg.delims.field)
        sender = [c.strip() for c in msg.delims.components(_get(fields, 5)) if c.strip()]
        msg.instrument = _joined(sender)
        msg.abbott = bool(sender) and sender[0].upper().startswith("ARCHITECT")
        msg.processing_id = msg.delims.components(_get(fields, 12))[0].strip().upper()
        msg.sent_at = self.timestamp(_get(fields, 14), where, "H-14")

    def comment(self, fields: list[str], msg: _Message) -> None:
        text = msg.delims.unescape(_get(fields, 4)).strip()
        kind = msg.delims.unescape(_get(fields, 5)).strip().upper()
        if not text:
            return
        if self.result is not None:
            self.result.comments.append(text)
        elif self.last_kind == "O" and self.order is not None:
            self.order.comments.append((kind, text))
        elif self.last_kind == "P":
            self.patient_comments.append((kind, text))

    def start_order(self, fields: list[str], msg: _Message, where: SourceRef) -> None:
        d = msg.delims
        order = _Order()
        for number in (3, 4):
            ids = [c.strip() for c in d.components(_get(fields, number)) if c.strip()]
            if ids:
                order.sample_id = ids[0]
                break
        descriptor = [c.strip() for c in d.components(_get(fields, 16))]
        order.marks = {"O-12": d.components(_get(fields, 12))[0], "O-16": descriptor[0]}
        order.requested_at = self.timestamp(_get(fields, 7), where, "O-7")
        order.collected_at = self.timestamp(_get(fields, 8), where, "O-8")
        order.reported_at = self.timestamp(_get(fields, 23), where, "O-23")
        order.instrument = _joined(d.components(_get(fields, 25)))
        if descriptor[0].upper() in _QC_DESCRIPTORS:
            order.level = _level_from_descriptor(descriptor)
        self.order = order

    def is_qc(self, msg: _Message, order: _Order, control_lot: str | None
              ) -> tuple[bool, str | None, str | None]:
        """Return (is QC, deciding marker, level from a sample-id pattern group)."""
        marks = {"H-12": msg.processing_id[:1], "R-3.10": control_lot or "", **order.marks}
        verdict = classify("astm", marks)
        if verdict.is_qc is not None:
            return verdict.is_qc, verdict.name, None
        hit, level = sample_id_level(self.qc_sample, order.sample_id)
        return hit, (SAMPLE_ID_MARKER if hit else None), level

    # -- results -----------------------------------------------------------------

    def finish_result(self) -> None:
        result, self.result = self.result, None
        if result is None or self.msg is None:
            return
        record = self.build(result, self.msg, self.order or _Order())
        if record is not None:
            self.records.append(record)

    def build(self, result: _Result, msg: _Message, order: _Order) -> ParsedRecord | None:
        d, f, where = msg.delims, result.fields, result.where
        comps = d.components(_get(f, 3))
        ident = _test_identity(comps, msg.abbott)
        if ident is None:
            self.issues.add(where, "R-3", "结果记录缺少项目代码，已忽略")
            return None
        code, name, loinc, reagent_lot, control_lot = ident
        qc, marker, pattern_level = self.is_qc(msg, order, control_lot)
        values = [c.strip() for c in d.components(_get(f, 4)) if c.strip()]
        value_text = values[0] if values else ""
        if not value_text:
            if qc:
                self.issues.add(where, "R-4", f"项目 {code} 的质控结果为空，已忽略")
            return None
        value, censored = parse_value(value_text)
        if qc and value is None:
            self.issues.add(where, "R-4", f"项目 {code} 的结果“{value_text}”不是数值")
        range_text = d.components(_get(f, 6))[0].strip() or None
        bounds = parse_range(range_text) if (qc and range_text) else None
        measured = (
            self.timestamp(_get(f, 13), where, "R-13")
            or self.timestamp(_get(f, 12), where, "R-12")
            or order.reported_at
            or order.collected_at
            or order.requested_at
            or msg.sent_at
        )
        order_comments = order.comments or self.patient_comments
        control_name, flags = _split_comments(order_comments, qc)
        if qc and control_name is None and order.comments and self.patient_comments:
            control_name, _ = _split_comments(self.patient_comments, qc)
        level = (order.level or pattern_level) if qc else None
        return ParsedRecord(
            test_code=code,
            test_name=name,
            loinc=loinc,
            value_text=value_text,
            value=value,
            censored=censored,
            unit=d.components(_get(f, 5))[0].strip() or None,
            level=level,
            level_norm=normalize_level(level),
            qc_lot=control_lot,
            control_name=control_name,
            measured_at=measured,
            is_qc=qc,
            qc_marker=marker,
            target_low=bounds[0] if bounds else None,
            target_high=bounds[1] if bounds else None,
            reference_range=range_text,
            abnormal_flag=d.unescape(_get(f, 7)).strip() or None,
            result_status=d.unescape(_get(f, 9)).strip() or None,
            instrument_flags=tuple(flags + result.comments),
            instrument=_joined(d.components(_get(f, 14))) or order.instrument or msg.instrument,
            reagent_lot=reagent_lot,
            sample_id=order.sample_id,
            source=where,
            raw=truncate_raw(result.line),
        )

    def timestamp(self, text: str, where: SourceRef, label: str) -> datetime | None:
        text = text.split(self.msg.delims.component)[0] if self.msg else text
        try:
            return parse_compact_datetime(text)
        except ValueError as exc:
            self.issues.add(where, label, f"{label} 时间无效：{exc}")
            return None


def _compile_pattern(pattern: Any) -> re.Pattern[str]:
    try:
        return compile_qc_pattern(pattern)
    except ParseError as exc:
        raise ParseError(f"选项 qc_sample_id_pattern 无效：{exc.message_zh}") from exc


def _joined(parts: list[str]) -> str | None:
    """Return the non-empty components joined by spaces (the analyser as sent), or None."""
    return " ".join(p.strip() for p in parts if p.strip()) or None


def _level_from_descriptor(parts: list[str]) -> str | None:
    for part in reversed(parts[1:]):
        words = part.split()
        if words and words[0].upper() in _QC_DESCRIPTORS:
            words = words[1:]
        if words:
            return " ".join(words)
    return None


def _test_identity(
    comps: list[str], abbott: bool
) -> tuple[str, str | None, str | None, str | None, str | None] | None:
    """Return (code, name, loinc, reagent lot, control lot) from an R-3 universal test id."""
    comps = [c.strip() for c in comps] + [""] * 11
    local = comps[3:]
    if abbott and local[0]:
        return local[0], local[1] or None, None, local[4] or None, local[6] or None
    if local[0]:
        code, second = local[0], local[1]
        roche = _ROCHE_CODE.fullmatch(code)
        code = roche.group(1) if roche else code
        if _LOINC.fullmatch(second):
            return code, None, second, None, None
        is_name = bool(second) and not second.replace(".", "").isdigit()
        return code, second if is_name else None, None, None, None
    named = [c for c in comps if c]
    if not named:
        return None
    if local[1]:
        return local[1], None, None, None, None
    return named[0], None, None, None, None


def _split_comments(
    comments: list[tuple[str, str]], qc: bool
) -> tuple[str | None, list[str]]:
    """Pick the control name (first generic comment of a QC order); the rest are flags."""
    control_name: str | None = None
    flags: list[str] = []
    for kind, text in comments:
        if qc and control_name is None and kind in ("G", ""):
            control_name = text
        else:
            flags.append(text)
    return control_name, flags


def parse(data: bytes, options: Mapping[str, Any]) -> ParseResult:
    """Parse framed or bare ASTM bytes into records (patients included, ``is_qc=False``)."""
    return _Parser(options).run(data)


register(
    "astm", detect, parse, priority=20, options=frozenset({"encoding", "qc_sample_id_pattern"})
)
