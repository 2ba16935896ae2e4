"""HL7 v2 result messages (ORU^R01, OUL^R22), with or without MLLP framing.

MLLP blocks (``VT … FS CR``) are unwrapped; segments may be separated by CR, LF or
CR LF; several messages may follow each other.  Each message is parsed with the ``hl7``
library; one that cannot be read, or lacks a needed segment, becomes a per-message issue.

QC is recognised by

* ``MSH-16`` = ``2`` (dialect of Mindray, Getein and other Chinese analysers, where
  MSH-16 is 0 patient, 1 calibration, 2 QC).  Their QC message carries no OBX: the OBR
  holds it — OBR-3 test, OBR-13 control name, OBR-14 lot, OBR-15 expiry, OBR-17 level,
  OBR-18 target mean, OBR-19 target SD, OBR-20 result, OBR-21 unit, OBR-6/7 time.
  Several levels may be sent in one OBR as ``~`` repetitions or ``^`` components of
  OBR-12…21; each position gives one record (a field with one value applies to all).
* ``SPM-11`` specimen role ``Q`` (control specimen, HL7 table 0369), or a sample id
  matching ``qc_sample_id_pattern``; results are then read from OBX: OBX-3 code
  (LOINC when the coding system is ``LN``), OBX-5 value, OBX-6 unit, OBX-7 range,
  OBX-8 flags, OBX-11 status, OBX-14 time, OBX-18 equipment.

Other results are returned with ``is_qc=False``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import hl7

from .astm import DEFAULT_QC_SAMPLE_ID
from .numbers import (
    normalize_level,
    parse_compact_datetime,
    parse_number,
    parse_range,
    parse_value,
    to_date,
)
from .records import IssueLog, ParsedRecord, ParseError, ParseResult, SourceRef, truncate_raw
from .registry import register

__all__ = ["detect", "parse", "split_messages"]

logger = logging.getLogger(__name__)

VT, FS = b"\x0b", b"\x1c"
_HEAD = re.compile(rb"(?:MSH|FHS|BHS)[^\w\s]")
_SUPPORTED = {"ORU", "OUL"}
_BATCH_SEGMENTS = {"FHS", "FTS", "BHS", "BTS"}
_CHARSETS = {
    "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "GB 18030-2000": "gb18030",
    "GB18030": "gb18030", "GBK": "gb18030", "GB2312": "gb18030", "8859/1": "latin-1",
}


def detect(data: bytes) -> bool:
    """Say whether ``data`` is HL7 v2: an MLLP block or text starting with ``MSH|``."""
    head = data.lstrip(b"\x00\r\n\t ")[:8]
    return head[:1] == VT or bool(_HEAD.match(head))


def _blocks(data: bytes) -> list[bytes]:
    if VT not in data:
        return [data]
    parts = data.split(VT)
    blocks = [parts[0]] if b"MSH" in parts[0] else []
    blocks += [part.split(FS, 1)[0] for part in parts[1:]]
    return [b for b in blocks if b.strip()]


def _decode(block: bytes, forced: str | None) -> str:
    declared = None
    match = re.search(rb"MSH(.)", block)
    if match:
        fields = block[match.start() :].split(b"\r", 1)[0].split(match.group(1))
        if len(fields) > 17:
            name = fields[17].decode("latin-1").strip().upper()
            declared = _CHARSETS.get(name)
    for enc in [e for e in (forced, declared) if e] + ["utf-8", "gb18030"]:
        try:
            return block.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
    return block.decode("latin-1")


def split_messages(data: bytes, encoding: str | None = None) -> list[list[str]]:
    """Return each message as its list of segment strings (MLLP and batch headers removed)."""
    messages: list[list[str]] = []
    for block in _blocks(data):
        text = _decode(block, encoding).replace("\r\n", "\r").replace("\n", "\r")
        for segment in text.split("\r"):
            segment = segment.strip("\x00\t \x0b\x1c")
            if not segment or segment[:3] in _BATCH_SEGMENTS:
                continue
            if segment.startswith("MSH") or not messages:
                messages.append([segment])
            else:
                messages[-1].append(segment)
    return messages


@dataclass
class _Seps:
    component: str
    repeat: str
    escape: str
    sub: str


@dataclass
class _Group:
    obr: Any
    index: int
    obx: list[tuple[Any, int, list[str]]] = field(default_factory=list)
    spm: Any = None


class _Message:
    """One parsed message with safe field accessors (1-based HL7 field numbers)."""

    def __init__(self, msg: Any, seps: _Seps) -> None:
        self.msg, self.seps = msg, seps

    def raw(self, seg: Any, number: int) -> str:
        return str(seg[number]) if 0 < number < len(seg) else ""

    def unescape(self, text: str) -> str:
        if self.seps.escape not in text:
            return text
        try:
            return str(self.msg.unescape(text))
        except Exception:  # a malformed escape keeps the text as sent
            return text

    def values(self, seg: Any, number: int) -> list[str]:
        """Return the repetitions of a field, or its components when not repeated."""
        text = self.raw(seg, number)
        reps = text.split(self.seps.repeat)
        parts = reps if len(reps) > 1 else text.split(self.seps.component)
        return [self.unescape(p.split(self.seps.sub)[0]).strip() for p in parts]

    def components(self, seg: Any, number: int, rep: int = 0) -> list[str]:
        reps = self.raw(seg, number).split(self.seps.repeat)
        text = reps[rep] if rep < len(reps) else ""
        return [self.unescape(c).strip() for c in text.split(self.seps.component)]

    def first(self, seg: Any, number: int) -> str:
        return self.components(seg, number)[0].split(self.seps.sub)[0].strip()


class _Parser:
    def __init__(self, options: Mapping[str, Any]) -> None:
        self.issues = IssueLog("hl7")
        self.records: list[ParsedRecord] = []
        self.encoding = options.get("encoding")
        pattern = options.get("qc_sample_id_pattern")
        try:
            self.qc_sample = re.compile(pattern if pattern is not None else DEFAULT_QC_SAMPLE_ID)
        except (re.error, TypeError) as exc:
            raise ParseError("选项 qc_sample_id_pattern 不是有效的正则表达式") from exc

    def run(self, data: bytes) -> ParseResult:
        messages = split_messages(data, self.encoding)
        if not messages:
            raise ParseError("HL7 文件中没有任何消息")
        for number, segments in enumerate(messages, start=1):
            self.message(number, segments)
        return self.issues.result(self.records)

    def message(self, number: int, segments: list[str]) -> None:
        where = SourceRef("hl7", message=number)
        if not segments[0].startswith("MSH"):
            self.issues.add(where, "MSH", "缺少 MSH 消息头，该消息已忽略")
            return
        seps = _separators(segments[0])
        if seps is None:
            self.issues.add(where, "MSH-2", "MSH 段的分隔符定义无效，该消息已忽略")
            return
        try:
            parsed = hl7.parse("\r".join(segments))
        except Exception as exc:  # the library raises several types on malformed input
            logger.debug("hl7 message %s unreadable: %s", number, exc)
            self.issues.add(where, None, "无法解析该 HL7 消息，已忽略")
            return
        self.read(_Message(parsed, seps), number, where)

    def read(self, m: _Message, number: int, where: SourceRef) -> None:
        msh = m.msg[0]
        kind = m.components(msh, 9)
        code = kind[0].upper()
        if code == "ACK":
            return
        if code not in _SUPPORTED:
            label = "^".join(c for c in kind[:2] if c) or "（空）"
            self.issues.add(where, "MSH-9", f"不支持的消息类型 {label}，已忽略")
            return
        ctx = _Context(
            number=number,
            mindray_kind=m.first(msh, 16),
            instrument=" ".join(p for p in (m.first(msh, 3), m.first(msh, 4)) if p) or None,
            sent_at=self.timestamp(m, msh, 7, where, "MSH-7"),
            spm_first=code == "OUL",
        )
        groups = self.groups(m, ctx)
        if not groups:
            self.issues.add(where, "OBR", "缺少 OBR 段，该消息没有可读取的结果")
            return
        for group in groups:
            self.group(m, ctx, group)

    def groups(self, m: _Message, ctx: _Context) -> list[_Group]:
        groups: list[_Group] = []
        pending_spm = None
        for index, seg in enumerate(m.msg, start=1):
            name = str(seg[0]).strip().upper() if len(seg) else ""
            if name == "OBR":
                groups.append(_Group(seg, index, spm=pending_spm if ctx.spm_first else None))
                pending_spm = None
            elif name == "SPM":
                if ctx.spm_first or not groups:
                    pending_spm = seg
                else:
                    groups[-1].spm = groups[-1].spm or seg
            elif name == "OBX":
                if not groups:
                    where = SourceRef("hl7", message=ctx.number, index=index, segment="OBX")
                    self.issues.add(where, "OBR", "OBX 段之前缺少 OBR 段，已忽略")
                    continue
                groups[-1].obx.append((seg, index, []))
            elif name == "NTE" and groups and groups[-1].obx:
                note = m.unescape(m.raw(seg, 3)).strip()
                if note:
                    groups[-1].obx[-1][2].append(note)
        if pending_spm is not None and groups and groups[-1].spm is None:
            groups[-1].spm = pending_spm
        return groups

    def group(self, m: _Message, ctx: _Context, group: _Group) -> None:
        obr = group.obr
        where = SourceRef("hl7", message=ctx.number, index=group.index, segment="OBR")
        sample_id = (m.first(group.spm, 2) if group.spm is not None else "") or m.first(obr, 2)
        sample_id = sample_id or m.first(obr, 3)
        role = m.first(group.spm, 11).upper() if group.spm is not None else ""
        qc = (
            ctx.mindray_kind == "2"
            or role == "Q"
            or bool(sample_id and self.qc_sample.search(sample_id))
        )
        base = {
            "sample_id": sample_id or None,
            "instrument": " ".join(p for p in m.components(obr, 4) if p) or ctx.instrument,
            "measured_at": self.timestamp(m, obr, 7, where, "OBR-7")
            or self.timestamp(m, obr, 6, where, "OBR-6")
            or ctx.sent_at,
        }
        if group.obx:
            for seg, index, notes in group.obx:
                self.observation(m, ctx, seg, index, notes, qc, base)
        elif qc and any(m.raw(obr, n).strip() for n in range(13, 22)):
            self.obr_levels(m, ctx, obr, where, base)
        elif ctx.mindray_kind != "1":
            self.issues.add(where, "OBX", "OBR 段之后没有 OBX 结果段")

    def obr_levels(
        self, m: _Message, ctx: _Context, obr: Any, where: SourceRef, base: dict[str, Any]
    ) -> None:
        code = m.first(obr, 3)
        if not code:
            self.issues.add(where, "OBR-3", "缺少质控项目（OBR-3），已忽略")
            return
        columns = {n: m.values(obr, n) for n in range(12, 22)}
        count = max(len(v) for v in columns.values())

        def pick(number: int, i: int) -> str:
            vals = columns[number]
            if i < len(vals):
                return vals[i]
            return vals[0] if len(vals) == 1 else ""

        for i in range(count):
            at = SourceRef(
                "hl7", message=ctx.number, index=where.index, segment="OBR",
                repeat=i + 1 if count > 1 else None,
            )
            value_text = pick(20, i)
            if not value_text:
                self.issues.add(at, "OBR-20", f"项目 {code} 缺少质控结果（OBR-20）")
                continue
            value, censored = parse_value(value_text)
            if value is None:
                self.issues.add(at, "OBR-20", f"项目 {code} 的结果“{value_text}”不是数值")
            expiry = self.timestamp_text(pick(15, i), at, "OBR-15")
            level = pick(17, i) or None
            self.records.append(
                ParsedRecord(
                    test_code=code,
                    value_text=value_text,
                    value=value,
                    censored=censored,
                    unit=pick(21, i) or None,
                    level=level,
                    level_norm=normalize_level(level),
                    control_name=pick(13, i) or None,
                    qc_lot=pick(14, i) or None,
                    qc_expiry=to_date(expiry),
                    target_mean=self.number(pick(18, i), at, "OBR-18", "靶值"),
                    target_sd=self.number(pick(19, i), at, "OBR-19", "标准差"),
                    is_qc=True,
                    source=at,
                    raw=truncate_raw("|".join(str(f) for f in obr)),
                    **base,
                )
            )

    def observation(
        self,
        m: _Message,
        ctx: _Context,
        seg: Any,
        index: int,
        notes: list[str],
        qc: bool,
        base: dict[str, Any],
    ) -> None:
        where = SourceRef("hl7", message=ctx.number, index=index, segment="OBX")
        ident = m.components(seg, 3) + [""] * 6
        code = ident[0].split(m.seps.sub)[0].strip()
        if not code:
            self.issues.add(where, "OBX-3", "缺少项目代码（OBX-3），已忽略")
            return
        loinc = code if ident[2].upper() == "LN" else (ident[3] if ident[5].upper() == "LN" else "")
        name = ident[1]
        sub_id = m.first(seg, 4)
        if not name and sub_id and not re.fullmatch(r"[\d.]+", sub_id):
            name = sub_id
        value_text = _observation_value(m, seg)
        if not value_text:
            if qc:
                self.issues.add(where, "OBX-5", f"项目 {code} 的质控结果为空，已忽略")
            return
        value, censored = parse_value(value_text)
        if qc and value is None:
            self.issues.add(where, "OBX-5", f"项目 {code} 的结果“{value_text}”不是数值")
        range_text = m.first(seg, 7) or None
        bounds = parse_range(range_text) if (qc and range_text) else None
        equipment = m.first(seg, 18)
        fields = dict(base)
        fields["measured_at"] = self.timestamp(m, seg, 14, where, "OBX-14") or base["measured_at"]
        if equipment:
            fields["instrument"] = equipment
        self.records.append(
            ParsedRecord(
                test_code=code,
                test_name=name or None,
                loinc=loinc or None,
                value_text=value_text,
                value=value,
                censored=censored,
                unit=m.first(seg, 6) or None,
                is_qc=qc,
                target_low=bounds[0] if bounds else None,
                target_high=bounds[1] if bounds else None,
                reference_range=range_text,
                abnormal_flag="~".join(v for v in m.values(seg, 8) if v) or None,
                result_status=m.first(seg, 11) or None,
                instrument_flags=tuple(notes),
                source=where,
                raw=truncate_raw("|".join(str(f) for f in seg)),
                **fields,
            )
        )

    # -- small readers -------------------------------------------------------------

    def number(self, text: str, where: SourceRef, label: str, name: str) -> float | None:
        if not text:
            return None
        try:
            return parse_number(text)
        except ValueError:
            self.issues.add(where, label, f"{name}“{text}”不是有效数字")
            return None

    def timestamp(
        self, m: _Message, seg: Any, number: int, where: SourceRef, label: str
    ) -> datetime | None:
        return self.timestamp_text(m.first(seg, number), where, label)

    def timestamp_text(self, text: str, where: SourceRef, label: str) -> datetime | None:
        try:
            return parse_compact_datetime(text)
        except ValueError as exc:
            self.issues.add(where, label, f"{label} 时间无效：{exc}")
            return None


@dataclass
class _Context:
    number: int
    mindray_kind: str
    instrument: str | None
    sent_at: datetime | None
    spm_first: bool


def _separators(msh: str) -> _Seps | None:
    if len(msh) < 8:
        return None
    sep = msh[3]
    enc = msh[4:].split(sep, 1)[0]
    chars = sep + enc
    if len(enc) < 3 or len(set(chars)) != len(chars):
        return None
    if any(c.isalnum() or c.isspace() for c in chars):
        return None
    return _Seps(enc[0], enc[1], enc[2], enc[3] if len(enc) > 3 else "&")


def _observation_value(m: _Message, seg: Any) -> str:
    first_rep = m.raw(seg, 5).split(m.seps.repeat)[0]
    comps = [m.unescape(c).strip() for c in first_rep.split(m.seps.component)]
    if m.first(seg, 2).upper() == "SN" and len(comps) > 1:
        return "".join(c for c in comps[:2] if c)
    return next((c for c in comps if c), "")


def parse(data: bytes, options: Mapping[str, Any]) -> ParseResult:
    """Parse HL7 v2 bytes into records (patients included, ``is_qc=False``)."""
    return _Parser(options).run(data)


register(
    "hl7", detect, parse, priority=10, options=frozenset({"encoding", "qc_sample_id_pattern"})
)
