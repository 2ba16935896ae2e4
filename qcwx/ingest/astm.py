"""ASTM E1394 / CLSI LIS2-A2 records, framed (LIS1-A) or bare.

Transport (LIS1-A): ``STX FN text ETB|ETX C1 C2 CR LF``; the checksum is the sum of the
bytes from FN through ETB/ETX inclusive, modulo 256, as two hex digits.  Intermediate
(ETB) frames are concatenated with the next frame.  ENQ/ACK/NAK/EOT between frames are
link noise and ignored.  Real captures bend the rules, and all of these are accepted:
frames holding several CR-separated records, frames longer than 247 characters, frame
numbers out of sequence, frames ended by CR, LF, CR LF or nothing.

A frame whose checksum is wrong is reported (naming the frame) and its text dropped,
together with the rest of the record it belonged to; a retransmission of the same frame
number right after it replaces it silently.

The measurement time is R-13, else R-12, O-23, O-8, O-7 and finally H-14.

QC identification (any of): header processing ID H-12 ``Q``; order action code O-12
``Q``; specimen descriptor O-16 whose first component is ``CTRL``/``QC``/``CONTROL``
(the level is then the last component without that word: ``CTRL^^CTRL MEDIUM`` →
``MEDIUM``); a sample id matching ``qc_sample_id_pattern``; an Abbott ARCHITECT control
lot (10th component of the test id).  Everything else is returned with ``is_qc=False``.

Field numbers below are the standard's 1-based ones (``R-4`` is ``fields[3]``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .numbers import normalize_level, parse_compact_datetime, parse_range, parse_value
from .records import IssueLog, ParsedRecord, ParseError, ParseResult, SourceRef, truncate_raw
from .registry import register

__all__ = ["deframe", "detect", "parse", "split_records"]

logger = logging.getLogger(__name__)

STX, ETX, ETB, ENQ, ACK, NAK, EOT = 0x02, 0x03, 0x17, 0x05, 0x06, 0x15, 0x04
CR, LF = 0x0D, 0x0A
_LINK_NOISE = frozenset({ENQ, ACK, NAK, EOT, CR, LF, 0x00, 0x09, 0x20})
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_FRAME_NUMBERS = frozenset(b"01234567")
_BARE_HEADER = re.compile(rb"[0-7]?H[^\w\s][^\w\s][^\w\s][^\w\s]")
_RECORD_TYPES = frozenset("HPOR CQLMS".replace(" ", ""))
_QC_DESCRIPTORS = frozenset({"CTRL", "QC", "CONTROL", "CONTROLS", "QCTRL"})
DEFAULT_QC_SAMPLE_ID = r"(?i)^(?:QC|CTRL|CONTROL)(?:[-_ ]|\d|$)"
_LOINC = re.compile(r"\d{1,7}-\d")
_ROCHE_CODE = re.compile(r"(\d+)/\S*")


def detect(data: bytes) -> bool:
    r"""Say whether ``data`` looks like ASTM: ENQ/STX framing or a bare ``H|\^&`` header."""
    head = data.lstrip(bytes(_LINK_NOISE))[:16]
    if head[:1] == bytes([STX]):
        return True
    return bool(_BARE_HEADER.match(head))


# ---------------------------------------------------------------- transport layer


@dataclass
class _Deframer:
    data: bytes
    issues: IssueLog
    records: list[tuple[bytes, int]] = field(default_factory=list)
    pending: bytearray = field(default_factory=bytearray)
    pending_frame: int = 0
    resync: bool = False
    ordinal: int = 0
    stray: int = 0

    def run(self) -> list[tuple[bytes, int]]:
        data, pos, end = self.data, 0, len(self.data)
        while pos < end:
            nxt = data.find(STX, pos)
            if nxt < 0:
                self._count_stray(data[pos:])
                break
            self._count_stray(data[pos:nxt])
            pos = self._frame(nxt)
        if self.pending and not self.resync:
            self._emit_tail()
        if self.stray:
            note = f"帧之外有 {self.stray} 个字节无法识别，已忽略"
            self.issues.add(SourceRef("astm"), None, note)
        return self.records

    def _count_stray(self, chunk: bytes) -> None:
        self.stray += sum(1 for b in chunk if b not in _LINK_NOISE)

    def _frame(self, start: int) -> int:
        data = self.data
        self.ordinal += 1
        where = SourceRef("astm", frame=self.ordinal)
        limit = data.find(STX, start + 1)
        limit = len(data) if limit < 0 else limit
        stop = _find_any(data, start + 1, (ETX, ETB), limit)
        if stop < 0:
            self.issues.add(where, None, "帧不完整（缺少 ETX/ETB 结束符），该帧已丢弃")
            self._drop_pending()
            return limit
        body = data[start + 1 : stop]
        number = body[:1] if body[:1] and body[0] in _FRAME_NUMBERS else b""
        text = body[len(number) :]
        given = data[stop + 1 : stop + 3]
        after = stop + 1
        has_sum = len(given) == 2 and all(b in _HEX for b in given)
        if has_sum:
            after += 2
        after += 1 if data[after : after + 1] == b"\r" else 0
        after += 1 if data[after : after + 1] == b"\n" else 0
        expected = sum(data[start + 1 : stop + 1]) % 256
        if has_sum and int(given, 16) != expected:
            if number and self._next_frame_number(after) == number:
                logger.debug("ASTM frame %s retransmitted after a bad checksum", self.ordinal)
                return after
            label = f"（帧号 {number.decode()}）" if number else ""
            self.issues.add(
                where,
                "checksum",
                f"帧{label}校验和错误：应为 {expected:02X}，收到 {given.decode('ascii')}；"
                "该帧数据已丢弃",
            )
            self._drop_pending()
            self.resync = data[stop] == ETB
            return after
        self._take(text, final=data[stop] == ETX)
        return after

    def _next_frame_number(self, pos: int) -> bytes:
        data = self.data
        while pos < len(data) and data[pos] in _LINK_NOISE:
            pos += 1
        if pos + 1 < len(data) and data[pos] == STX:
            return data[pos + 1 : pos + 2]
        return b""

    def _take(self, text: bytes, *, final: bool) -> None:
        if self.resync:
            cut = _find_any(text, 0, (CR, LF))
            if cut < 0:
                self.resync = not final
                return
            text = text[cut:]
            self.resync = False
        if not self.pending:
            self.pending_frame = self.ordinal
        self.pending += text
        if CR in text or LF in text:
            self._emit_complete()
        if final:
            self._emit_tail()

    def _emit_complete(self) -> None:
        parts = re.split(rb"\r\n|\r|\n", bytes(self.pending))
        for part in parts[:-1]:
            if part.strip():
                self.records.append((part, self.pending_frame))
        self.pending = bytearray(parts[-1])
        if len(parts) > 1:
            self.pending_frame = self.ordinal

    def _emit_tail(self) -> None:
        if bytes(self.pending).strip():
            self.records.append((bytes(self.pending), self.pending_frame))
        self.pending = bytearray()

    def _drop_pending(self) -> None:
        self.pending = bytearray()


def _find_any(data: bytes, start: int, needles: tuple[int, ...], end: int | None = None) -> int:
    stop = len(data) if end is None else end
    hits = [i for i in (data.find(n, start, stop) for n in needles) if i >= 0]
    return min(hits) if hits else -1


def deframe(data: bytes, issues: IssueLog | None = None) -> list[tuple[bytes, int | None]]:
    """Return ``(record bytes, first frame ordinal)`` pairs from framed or bare ASTM.

    Bare input (no STX) is split at CR, LF or CR LF; the frame ordinal is then None.
    """
    log = issues if issues is not None else IssueLog("astm")
    if STX in data:
        return list(_Deframer(data, log).run())
    noise = bytes([ENQ, ACK, NAK, EOT, 0x00])
    lines = re.split(rb"\r\n|\r|\n", data.translate(None, noise))
    return [(line, None) for line in lines if line.strip()]


def _decode(raw: bytes, encoding: str | None) -> str:
    for enc in ([encoding] if encoding else []) + ["utf-8", "gb18030"]:
        try:
            return raw.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("latin-1")


def split_records(data: bytes, encoding: str | None = None) -> list[str]:
    """Return the record lines of framed or bare ASTM (a helper for tests and tools)."""
    return [_decode(raw, encoding) for raw, _ in deframe(data)]


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
    qc: bool = False
    level: str | None = None
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
            self.line(_decode(raw, self.encoding), frame)
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
        msg.instrument = " ".join(sender) or None
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
        action = d.components(_get(fields, 12))[0].strip().upper()
        descriptor = [c.strip() for c in d.components(_get(fields, 16))]
        order.requested_at = self.timestamp(_get(fields, 7), where, "O-7")
        order.collected_at = self.timestamp(_get(fields, 8), where, "O-8")
        order.reported_at = self.timestamp(_get(fields, 23), where, "O-23")
        by_descriptor = bool(descriptor) and descriptor[0].upper() in _QC_DESCRIPTORS
        if by_descriptor:
            order.level = _level_from_descriptor(descriptor)
        by_sample = bool(order.sample_id and self.qc_sample.search(order.sample_id))
        order.qc = action == "Q" or by_descriptor or by_sample
        self.order = order

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
        qc = msg.processing_id.startswith("Q") or order.qc or bool(control_lot)
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
        level = order.level if qc else None
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
            target_low=bounds[0] if bounds else None,
            target_high=bounds[1] if bounds else None,
            reference_range=range_text,
            abnormal_flag=d.unescape(_get(f, 7)).strip() or None,
            result_status=d.unescape(_get(f, 9)).strip() or None,
            instrument_flags=tuple(flags + result.comments),
            instrument=msg.instrument,
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
        return re.compile(pattern if pattern is not None else DEFAULT_QC_SAMPLE_ID)
    except (re.error, TypeError) as exc:
        raise ParseError("选项 qc_sample_id_pattern 不是有效的正则表达式") from exc


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
