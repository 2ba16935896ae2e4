"""What crosses an import channel's edge: items in, per-item outcomes and reports out.

Each channel's input becomes :class:`~qcwx.ingest.mapping.Candidate` rows here — a parse
result's QC records (:func:`candidates_from_parse`) or a JSON batch's items, refused per
item with the field named (:func:`candidates_from_json`) — and the engine's answer goes
back as :class:`Outcome` per item inside an :class:`ImportReport`, the JSON the lab API
returns and the upload pages show. ``openapi.py`` documents these same shapes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from qcwx.errors import NotFound, UserError
from qcwx.ingest.formats import ParseResult
from qcwx.ingest.formats.dialects import apply_lab_pattern
from qcwx.ingest.mapping import Candidate, MappedRecord
from qcwx.ingest.mapping_admin import lab_qc_pattern
from qcwx.orgs.models import Lab

#: Items in one JSON batch.
MAX_ITEMS = 1000
STATUS_LABEL = {"stored": "新增", "duplicate": "重复", "error": "错误"}
PREVIEW_LABEL = {"stored": "新增", "duplicate": "已存在", "error": "错误"}


# ---------------------------------------------------------------- outcome objects
@dataclass
class Outcome:
    """What happened to one input item; ``status`` is ``stored``, ``duplicate`` or ``error``."""

    index: int
    position: str
    value_text: str
    row: int | None = None
    client_id: str | None = None
    test_code: str | None = None
    level: str | None = None
    status: str = "pending"
    error: str | None = None
    field: str | None = None
    code: int | None = None
    retryable: bool = False
    test_system_id: int | None = None
    test_system: str | None = None
    level_index: int | None = None
    run_date: date | None = None
    run_no: int | None = None
    run_id: int | None = None
    verdict: dict | None = None
    same_as: Outcome | None = None
    checked: tuple | None = dataclasses.field(default=None, repr=False)  # (QcLevel, text, value)

    @classmethod
    def of(cls, item: Candidate) -> Outcome:
        """Start the outcome of a candidate (before mapping)."""
        return cls(item.index, item.position, str(item.value_text or ""), item.row,
                   item.client_id, item.test_code or (str(item.test_system_id)
                                                      if item.test_system_id else None),
                   item.level)

    def fail(self, exc: UserError) -> None:
        """Mark the item as refused with the error's Chinese message and field."""
        self.status, self.error, self.field, self.code = "error", exc.message, exc.field, exc.status
        self.retryable = exc.retryable  # not stored because of a concurrent writer: resend

    def bind(self, rec: MappedRecord) -> None:
        """Remember what the item was mapped to (shown in previews and results)."""
        ts = rec.test_system
        self.test_system_id, self.test_system = ts.id, f"{ts.analyte.name}（{ts.analyte.code}）"
        self.level_index, self.run_date, self.run_no = rec.level_index, rec.run_date, rec.run_no
        self.client_id = rec.client_id if self.client_id is None else self.client_id

    def store(self, run_id: int, duplicate: bool = False) -> None:
        """Mark the item as stored (or found already stored) in run ``run_id``."""
        self.status, self.run_id = ("duplicate" if duplicate else "stored"), run_id

    def to_dict(self) -> dict:
        """Return the item as the API reports it."""
        out: dict[str, Any] = {"index": self.index, "client_id": self.client_id,
                               "status": self.status, "position": self.position}
        if self.row is not None:
            out["row"] = self.row
        if self.status == "error":
            out.update(error=self.error, field=self.field, code=self.code,
                       retryable=self.retryable)
        else:
            out.update(test_system_id=self.test_system_id, level=self.level_index,
                       run_date=self.run_date.isoformat() if self.run_date else None,
                       run_no=self.run_no, run_id=self.run_id, verdict=self.verdict)
        return out


@dataclass
class ImportReport:
    """The outcome of one import: per item, parse problems, and the batch record."""

    format: str
    outcomes: list[Outcome]
    parse_errors: list[dict] = field(default_factory=list)
    skipped: int = 0
    dry_run: bool = False
    batch_id: int | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Return {stored, duplicate, error}; unreadable rows/frames count as errors."""
        counts = dict.fromkeys(("stored", "duplicate", "error"), 0)
        for o in self.outcomes:
            counts[o.status] += 1
        counts["error"] += len(self.parse_errors)
        return counts

    @property
    def runs(self) -> list[dict]:
        """Return the verdict of each run touched, rejects first, then warnings."""
        seen: dict[Any, dict] = {}
        for o in self.outcomes:
            if o.verdict is not None:
                key = o.run_id or (o.test_system_id, o.run_date, o.run_no)
                seen.setdefault(key, o.verdict | {"test_system": o.test_system})
        order = {"reject": 0, "warning": 1, "pending": 2, "accept": 3}
        return sorted(seen.values(), key=lambda v: (order.get(v["status"], 9), v["run_date"],
                                                    v.get("test_system") or ""))

    def to_dict(self) -> dict:
        """Return the report as the API answers it."""
        return {"batch_id": self.batch_id, "format": self.format, "counts": self.counts,
                "skipped_non_qc": self.skipped, "items": [o.to_dict() for o in self.outcomes],
                "parse_errors": self.parse_errors}



# ---------------------------------------------------------------- channels → candidates
def candidates_from_parse(result: ParseResult, lab: Lab | None = None
                          ) -> tuple[list[Candidate], int]:
    """Turn a parse result's QC records into candidates; return them and the non-QC count.

    With ``lab``, records no dialect marked either way become QC when their sample id
    matches the lab's own QC sample-id pattern (:func:`mapping_admin.lab_qc_pattern`).
    """
    records = result.records
    if lab is not None:
        records = apply_lab_pattern(records, lab_qc_pattern(lab.id))
    items = []
    for rec in records:
        if not rec.is_qc:
            continue
        items.append(Candidate(
            index=len(items), position=rec.source.describe(), value_text=rec.value_text,
            test_code=rec.test_code, level=rec.level, qc_lot=rec.qc_lot,
            measured_at=rec.measured_at, run_no=rec.run_no, client_id=rec.client_id,
            row=rec.source.row, instrument=rec.instrument, loinc=rec.loinc))
    return items, len(records) - len(items)


def parse_issues(result: ParseResult) -> list[dict]:
    """Return the parser's per-row/frame/message problems as plain dicts (Chinese)."""
    return [{"position": issue.position.describe(), "row": issue.position.row,
             "field": issue.field, "error": issue.message_zh} for issue in result.errors]


def _text(value: Any, field_name: str, limit: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{field_name} 必须是文字", field=field_name)
    text = str(value).strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON "\ud800" cannot be stored
        raise UserError(f"{field_name} 含有无效字符", field=field_name) from None
    if len(text) > limit:
        raise UserError(f"{field_name} 过长（最多{limit}个字符）", field=field_name)
    return text or None


def _json_item(index: int, item: Any) -> Candidate:
    """Read one JSON batch item into a candidate, refusing wrong types with the field named."""
    if not isinstance(item, Mapping):
        raise UserError("每一项必须是 JSON 对象", field="items")
    client_id = _text(item.get("client_id"), "client_id", 64)
    if not client_id:
        raise UserError("缺少 client_id（每条结果的唯一编号，用于重发去重）", field="client_id")
    ts_id = item.get("test_system_id")
    if ts_id is not None:
        if isinstance(ts_id, bool) or not (isinstance(ts_id, int) or (
                isinstance(ts_id, str) and ts_id.strip().isdigit())):
            raise UserError("test_system_id 必须是整数", field="test_system_id")
        ts_id = int(ts_id)
        if not 0 < ts_id < 2**53:
            raise NotFound("检测系统不存在或无权访问", field="test_system_id")
    code = _text(item.get("test_code"), "test_code", 64)
    if ts_id is None and not code:
        raise UserError("请提供 test_code 或 test_system_id", field="test_code")
    value = item.get("value")
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError("value 不是有效数字", field="value")
    value_text = _text(value, "value", 32)
    if value_text is None:
        raise UserError("缺少结果 value", field="value")
    measured_at, run_date = _json_moment(item)
    run_no = item.get("run_no")
    if run_no is not None and (isinstance(run_no, bool) or not isinstance(run_no, (int, str))):
        raise UserError("run_no 必须是 1–99 的整数", field="run_no")
    return Candidate(index=index, position=f"第 {index + 1} 项", value_text=value_text,
                     test_code=code, test_system_id=ts_id,
                     level=_text(item.get("level"), "level", 32),
                     qc_lot=_text(item.get("qc_lot"), "qc_lot", 64), measured_at=measured_at,
                     run_date=run_date, run_no=run_no, client_id=client_id,
                     instrument=_text(item.get("instrument"), "instrument", 128),
                     loinc=_text(item.get("loinc"), "loinc", 10))


def _json_moment(item: Mapping) -> tuple[datetime | None, date | None]:
    measured = item.get("measured_at")
    run_date = item.get("run_date")
    moment = day = None
    if measured is not None:
        if not isinstance(measured, str):
            raise UserError("measured_at 必须是 ISO 8601 时间文字", field="measured_at")
        try:
            moment = datetime.fromisoformat(measured.strip())
        except ValueError:
            raise UserError(f"measured_at“{measured[:40]}”不是有效时间"
                            "（例：2026-11-05T08:30:00+08:00）", field="measured_at") from None
    if run_date is not None:
        if not isinstance(run_date, str):
            raise UserError("run_date 必须是 YYYY-MM-DD 文字", field="run_date")
        try:
            day = date.fromisoformat(run_date.strip())
        except ValueError:
            raise UserError(f"run_date“{run_date[:40]}”不是有效日期（YYYY-MM-DD）",
                            field="run_date") from None
    if moment is None and day is None:
        raise UserError("请提供 measured_at 或 run_date", field="measured_at")
    return moment, day


def candidates_from_json(items: Sequence[Any]) -> tuple[list[Candidate], dict[int, UserError]]:
    """Read a JSON batch's items; return candidates and the per-item input errors."""
    cands, problems = [], {}
    for index, item in enumerate(items):
        try:
            cands.append(_json_item(index, item))
        except UserError as exc:
            raw_id = item.get("client_id") if isinstance(item, Mapping) else None
            cid = raw_id if isinstance(raw_id, str) and len(raw_id) <= 64 else None
            cands.append(Candidate(index=index, position=f"第 {index + 1} 项", value_text="",
                                   client_id=cid))
            problems[index] = exc
    return cands, problems

