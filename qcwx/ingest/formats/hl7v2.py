"""HL7 v2 result messages (ORU^R01, OUL^R22), with or without MLLP framing.

Transport and field access live in :mod:`.hl7_segments`. Each message is parsed with the
``hl7`` library; one that cannot be read, or lacks a needed segment, becomes a per-message
issue. QC is recognised by the HL7 markers of :mod:`qcwx.ingest.formats.dialects`:

* ``MSH-16`` = ``2`` (Mindray, Getein and other Chinese analysers: 0 patient,
  1 calibration, 2 QC). Their QC message carries no OBX: the OBR holds it — OBR-3 test,
  OBR-13 control name, OBR-14 lot, OBR-15 expiry, OBR-17 level, OBR-18 target mean, OBR-19
  target SD, OBR-20 result, OBR-21 unit, OBR-6/7 time. Several levels may be sent in one
  OBR as ``~`` repetitions or ``^`` components of OBR-12…21; each position gives one
  record (a field with one value applies to all).
* ``OBR-4`` = ``LQC`` (PixCell HemoScreen; ``OBS`` patient, ``PRF`` proficiency testing):
  the control's id is PID-2 (kept as sample id, control name and level text), its range
  OBX-7, the device serial OBX-15.
* ``SPM-11`` specimen role ``Q`` (control specimen, HL7 table 0369; ``P`` patient).
* failing any marker, a sample id (SPM-2, OBR-2, OBR-3) matching ``qc_sample_id_pattern``.

QC results in OBX: OBX-3 code (LOINC when the coding system is ``LN``), OBX-5 value,
OBX-6 unit, OBX-7 range, OBX-8 flags, OBX-11 status, OBX-14 time. The analyser
(``instrument``) is OBX-18 equipment instance identifier, else the dialect's own field
(Mindray OBR-4 maker^model, HemoScreen OBX-15 serial), else MSH-3 and MSH-4.

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

from qcwx.numbers import (
    normalize_level,
    parse_compact_datetime,
    parse_number,
    parse_range,
    parse_value,
    to_date,
)

from .dialects import SAMPLE_ID_MARKER, QcMarker, classify, compile_qc_pattern, sample_id_level
from .hl7_segments import Message as _Message
from .hl7_segments import detect, observation_value, separators, split_messages
from .records import IssueLog, ParsedRecord, ParseError, ParseResult, SourceRef, truncate_raw
from .registry import register

__all__ = ["detect", "parse", "split_messages"]

logger = logging.getLogger(__name__)

_SUPPORTED = {"ORU", "OUL"}


@dataclass
class _Group:
    obr: Any
    index: int
    obx: list[tuple[Any, int, list[str]]] = field(default_factory=list)
    spm: Any = None
    pid: Any = None


@dataclass
class _Context:
    number: int
    msh16: str
    instrument: str | None
    sent_at: datetime | None
    spm_first: bool


@dataclass
class _Kind:
    """How one OBR group was classified, and what its dialect adds to each record."""

    qc: bool
    marker: QcMarker | None = None
    marker_name: str | None = None
    control: str | None = None
    level: str | None = None


class _Parser:
    def __init__(self, options: Mapping[str, Any]) -> None:
        self.issues = IssueLog("hl7")
        self.records: list[ParsedRecord] = []
        self.encoding = options.get("encoding")
        try:
            self.qc_sample = compile_qc_pattern(options.get("qc_sample_id_pattern"))
        except ParseError as exc:
            raise ParseError(f"选项 qc_sample_id_pattern 无效：{exc.message_zh}") from exc

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
        seps = separators(segments[0])
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
            msh16=m.first(msh, 16),
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
        pending_spm = pid = None
        for index, seg in enumerate(m.msg, start=1):
            name = str(seg[0]).strip().upper() if len(seg) else ""
            if name == "PID":
                pid = seg
            elif name == "OBR":
                groups.append(_Group(seg, index, spm=pending_spm if ctx.spm_first else None,
                                     pid=pid))
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
        kind = self.classify(m, ctx, group, sample_id)
        instrument = ctx.instrument
        if kind.marker is not None and kind.marker.instrument_field == "OBR-4":
            instrument = m.joined(obr, 4) or instrument
        base = {
            "sample_id": kind.control or sample_id or None,
            "instrument": instrument,
            "measured_at": self.timestamp(m, obr, 7, where, "OBR-7")
            or self.timestamp(m, obr, 6, where, "OBR-6")
            or ctx.sent_at,
            "qc_marker": kind.marker_name,
        }
        if group.obx:
            for seg, index, notes in group.obx:
                self.observation(m, ctx, seg, index, notes, kind, base)
        elif kind.qc and any(m.raw(obr, n).strip() for n in range(13, 22)):
            self.obr_levels(m, ctx, obr, where, base)
        elif ctx.msh16 != "1":
            self.issues.add(where, "OBX", "OBR 段之后没有 OBX 结果段")

    def classify(self, m: _Message, ctx: _Context, group: _Group, sample_id: str) -> _Kind:
        """Ask the HL7 markers, then the sample-id pattern, whether the group is QC."""
        marks = {"MSH-16": ctx.msh16, "OBR-4": m.first(group.obr, 4),
                 "SPM-11": m.first(group.spm, 11) if group.spm is not None else ""}
        verdict = classify("hl7", marks)
        if verdict.is_qc is not None:
            control = None
            if verdict.is_qc and verdict.marker.control_field == "PID-2" and group.pid:
                control = m.first(group.pid, 2) or None
            return _Kind(verdict.is_qc, verdict.marker, verdict.name, control, control)
        hit, level = sample_id_level(self.qc_sample, sample_id)
        return _Kind(hit, None, SAMPLE_ID_MARKER if hit else None, None, level)

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
        kind: _Kind,
        base: dict[str, Any],
    ) -> None:
        qc = kind.qc
        where = SourceRef("hl7", message=ctx.number, index=index, segment="OBX")
        code, name, loinc = self.identity(m, seg)
        if not code:
            self.issues.add(where, "OBX-3", "缺少项目代码（OBX-3），已忽略")
            return
        value_text = observation_value(m, seg)
        if not value_text:
            if qc:
                self.issues.add(where, "OBX-5", f"项目 {code} 的质控结果为空，已忽略")
            return
        value, censored = parse_value(value_text)
        if qc and value is None:
            self.issues.add(where, "OBX-5", f"项目 {code} 的结果“{value_text}”不是数值")
        range_text = m.first(seg, 7) or None
        bounds = parse_range(range_text) if (qc and range_text) else None
        fields = dict(base)
        fields["measured_at"] = self.timestamp(m, seg, 14, where, "OBX-14") or base["measured_at"]
        dialect_field = kind.marker.instrument_field if kind.marker else None
        serial = m.first(seg, 15) if dialect_field == "OBX-15" else ""
        fields["instrument"] = m.first(seg, 18) or serial or base["instrument"]
        level = kind.level if qc else None
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
                level=level,
                level_norm=normalize_level(level),
                control_name=kind.control,
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

    @staticmethod
    def identity(m: _Message, seg: Any) -> tuple[str, str, str]:
        """Return an OBX's test code, name and LOINC code (OBX-3; a name in OBX-4 if none)."""
        ident = m.components(seg, 3) + [""] * 6
        code = ident[0].split(m.seps.sub)[0].strip()
        loinc = code if ident[2].upper() == "LN" else (ident[3] if ident[5].upper() == "LN" else "")
        name = ident[1]
        sub_id = m.first(seg, 4)
        if not name and sub_id and not re.fullmatch(r"[\d.]+", sub_id):
            name = sub_id
        return code, name, loinc

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


def parse(data: bytes, options: Mapping[str, Any]) -> ParseResult:
    """Parse HL7 v2 bytes into records (patients included, ``is_qc=False``)."""
    return _Parser(options).run(data)


register(
    "hl7", detect, parse, priority=10, options=frozenset({"encoding", "qc_sample_id_pattern"})
)
