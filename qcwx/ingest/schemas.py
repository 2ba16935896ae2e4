"""What crosses an import channel's edge: items in, per-item outcomes and reports out.

Each channel's input becomes :class:`~qcwx.ingest.mapping.Candidate` rows here — a parse
result's QC records (:func:`candidates_from_parse`) or a JSON batch's items, refused per
item with the field named (:func:`candidates_from_json`) — and the engine's answer goes
back as :class:`Outcome` per item inside an :class:`ImportReport`, the JSON the lab API
returns and the upload pages show. ``openapi.py`` documents these same shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, ConfigDict, Field, StrictInt, ValidationError

from qcwx.errors import UserError
from qcwx.ingest.formats import ParseResult
from qcwx.ingest.formats.dialects import apply_lab_pattern
from qcwx.ingest.mapping import Candidate, MappedRecord
from qcwx.ingest.mapping_admin import lab_qc_pattern
from qcwx.orgs.models import Lab
from qcwx.web.apischema import (
    ApiModel,
    FiniteNumber,
    Id,
    PlausibleDate,
    PlausibleDateTime,
    RunNo,
    text,
    user_error,
)

#: Items in one JSON batch.
MAX_ITEMS = 1000
STATUS_LABEL = {"stored": "新增", "duplicate": "重复", "error": "错误"}
PREVIEW_LABEL = {"stored": "新增", "duplicate": "已存在", "error": "错误"}


def _OptText(max_length: int):  # noqa: N802 - a type, named like one
    """Return an optional text type where ``""`` (as many LIS send) means "not given"."""
    return Annotated[text(max_length, min_length=0) | None, AfterValidator(lambda v: v or None)]


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


class ResultItem(ApiModel):
    """One QC value of a JSON batch, as ``POST /api/ingest/v1/results`` documents it.

    Unknown keys are ignored rather than refused: interface programs often send more than
    we read (unit, comment, the instrument's own flags), and that must not cost the item.
    Optional texts may be empty (sent as ``""`` by many LIS), meaning "not given".
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    client_id: text(64) = Field(title="结果编号（client_id）",
                                description="每条结果的唯一编号；重发同一编号不会重复保存")
    test_system_id: Id | None = Field(None, title="检测系统（test_system_id）",
                                      description="直接指定检测系统（与 test_code 二选一）")
    test_code: _OptText(64) = Field(
        None, title="项目代码（test_code）",
        description="仪器/LIS 项目代码（按项目映射或项目代码对应检测系统）")
    value: text(32) | FiniteNumber = Field(title="结果（value）",
                                           description="结果；建议以文字发送以保留小数位")
    measured_at: PlausibleDateTime | None = Field(
        None, title="检测时间（measured_at）",
        description="检测时间 ISO 8601；不带时区按实验室当地时间")
    run_date: PlausibleDate | None = Field(None, title="检测日期（run_date）",
                                           description="检测日期（当地）")
    run_no: RunNo | None = Field(None, title="批次号（run_no）", description="当天批次")
    level: _OptText(32) | StrictInt = Field(None, title="质控水平（level）",
                                            description="质控水平：1/2/3、L/M/H、水平1 等")
    qc_lot: _OptText(64) = Field(None, title="质控品批号（qc_lot）",
                                 description="质控品批号（可选）")
    instrument: _OptText(128) = Field(
        None, title="仪器（instrument）",
        description="仪器序列号、名称或型号（同一批号在多台仪器上检测时必填，用于区分检测系统）")
    loinc: _OptText(10) = Field(
        None, title="LOINC 编码（loinc）", examples=["14749-6"],
        description="仪器发送的 LOINC 编码（可选）：项目代码无映射时用于匹配检测系统，"
                    "并与所映射项目的 LOINC 核对")
    type_messages: ClassVar[dict[str, str]] = {
        "value": "结果（value）必须是文字或有限的数字",
        "level": "质控水平（level）必须是文字或整数"}


class ResultBatch(ApiModel):
    """The body of ``POST /results``: 1–``MAX_ITEMS`` items, each stored or refused alone.

    The view reads the envelope (:func:`qcwx.ingest.services.import_json`) and validates
    each item on its own with :class:`ResultItem`, so one bad item never fails the batch.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    items: list[ResultItem] = Field(title="结果列表（items）", min_length=1, max_length=MAX_ITEMS)


def _json_item(index: int, item: Any) -> Candidate:
    """Read one JSON batch item into a candidate, refusing it with the field named."""
    if not isinstance(item, Mapping):
        raise UserError("每一项必须是 JSON 对象", field="items")
    try:
        data = ResultItem.model_validate(item)
    except ValidationError as exc:
        raise user_error(ResultItem, exc) from None
    if data.test_system_id is None and not data.test_code:
        raise UserError("请提供 test_code 或 test_system_id", field="test_code")
    if data.measured_at is None and data.run_date is None:
        raise UserError("请提供 measured_at 或 run_date", field="measured_at")
    level = data.level if data.level is None else str(data.level)
    return Candidate(index=index, position=f"第 {index + 1} 项", value_text=str(data.value),
                     test_code=data.test_code, test_system_id=data.test_system_id,
                     level=level, qc_lot=data.qc_lot, measured_at=data.measured_at,
                     run_date=data.run_date, run_no=data.run_no, client_id=data.client_id,
                     instrument=data.instrument, loinc=data.loinc)


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

