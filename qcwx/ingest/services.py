"""Store QC values from files and lab interfaces through the same path as live entry.

Every channel here (CSV/XLSX upload, the JSON batch API, raw ASTM/HL7 messages, the
interface program's file posts) ends in :func:`import_candidates`:

1. **map** each item to test system, level, run date, run number and client id
   (:mod:`qcwx.ingest.mapping`) and **validate it alone** with submit_run's own checks, so
   one bad row is reported at its row and never blocks the others;
2. **deduplicate** against results already stored and inside the upload (same run and
   level: same value → duplicate, another value → conflict; a re-upload stores nothing);
3. **group** the records of one run (test system, date, run number) so the levels are
   judged together, and hand the runs to the one write path every channel takes,
   ``qcwx.iqc.services.prepare_runs`` / ``store_runs``: the same checks as a phone entry,
   one transaction, Core inserts, then one re-judge per test system from its earliest new
   run — the same verdicts as typing the runs in one after another
   (``tests/integration/test_ingest_bulk.py`` proves it), at bulk speed.

Runs of the last :data:`NOTIFY_DAYS` lab-local days alert like live entry; older runs (a
history import) page nobody, and every reject still opens its out-of-control record.

A *dry run* (the upload preview) does all of the above inside a savepoint and rolls it
back, so the preview is exactly what the commit will do, predicted verdicts included.
Services flush, never commit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from qcwx.catalog.models import QcLevel
from qcwx.errors import Conflict, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.ingest import ParseError, ParseResult, detect_format, parse_bytes
from qcwx.ingest.dialects import apply_lab_pattern
from qcwx.ingest.mapping import Candidate, LabMapper, MappedRecord, derive_client_id
from qcwx.ingest.mapping_admin import lab_qc_pattern
from qcwx.ingest.models import UploadBatch
from qcwx.iqc import services as iqc
from qcwx.iqc.models import CorrectiveAction, QcResult, QcRun, Violation
from qcwx.orgs.models import ApiKey, Hospital, Lab, User
from qcwx.orgs.scopes import can_access_lab, scoped
from qcwx.timeutil import local_today

log = logging.getLogger(__name__)

#: Runs dated within this many lab-local days (today included) alert like live entry.
NOTIFY_DAYS = 3
#: Up to this many runs get full verdicts (rules explained); beyond, a compact summary.
FULL_VERDICT_LIMIT = 500
#: Items in one JSON batch.
MAX_ITEMS = 1000
#: Uploaded files kept for preview → commit, in seconds.
UPLOAD_TTL = 2 * 3600
UPLOAD_ROLES = iqc.SUBMITTER_ROLES
STATUS_LABEL = {"stored": "新增", "duplicate": "重复", "error": "错误"}
PREVIEW_LABEL = {"stored": "新增", "duplicate": "已存在", "error": "错误"}
_CHUNK = 500
_DIGEST = re.compile(r"[0-9a-f]{64}")


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
            out.update(error=self.error, field=self.field, code=self.code)
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


# ---------------------------------------------------------------- the engine
def import_candidates(actor: User, lab: Lab, items: Sequence[Candidate], *, channel: str,
                      dry_run: bool = False, problems: Mapping[int, UserError] | None = None,
                      ) -> list[Outcome]:
    """Map, validate, deduplicate and store ``items`` of one lab; return one outcome each.

    ``problems`` carries items already refused by the channel's own input parsing (by
    index), so they are reported in order with the rest.
    """
    outcomes = [Outcome.of(item) for item in items]
    mapper = LabMapper(lab)
    accepted: list[tuple[Outcome, MappedRecord]] = []
    for out, item in zip(outcomes, items, strict=True):
        if problems and item.index in problems:
            out.fail(problems[item.index])
            continue
        try:
            rec = mapper.map(item)
            out.bind(rec)
            out.checked = _validate_alone(rec)
        except UserError as exc:
            out.fail(exc)
            continue
        accepted.append((out, rec))
    groups = _plan(accepted)
    savepoint = db.session.begin_nested() if dry_run else None
    try:
        _store(actor, lab, groups, channel)
        _settle_copies(outcomes)
        _attach_verdicts(outcomes)
    finally:
        if savepoint is not None:
            savepoint.rollback()
    if dry_run:
        for o in outcomes:
            if o.status == "stored":
                o.run_id = None  # rolled back: the preview has no run to link to
    return outcomes


def _validate_alone(rec: MappedRecord) -> tuple[QcLevel, str, float]:
    """Apply submit_run's own checks to one record, so its errors name its row.

    Uses the validation helpers of ``qcwx.iqc.services`` (not a second copy of the rules):
    test system active, date not in the future nor after the lot's expiry, level of the lot,
    value a finite number within the analyte's plausible range.
    """
    ts = rec.test_system
    if not ts.active:
        raise UserError("该检测系统已停用", field="test_system_id")
    iqc.check_run_date(ts, rec.run_date)
    try:
        resolved = iqc.resolve_levels(ts, {str(rec.level_index): rec.value_text})
    except UserError as exc:
        if exc.field and exc.field.startswith("level_"):  # submit_run's per-level form field
            exc.field = "value"
        raise
    ((level, (text, value)),) = resolved.items()
    return level, text, value


def _same_value(a: str, b: str) -> bool:
    try:
        return iqc.parse_value(a, "value") == iqc.parse_value(b, "value")
    except UserError:
        return a.strip() == b.strip()


def _plan(accepted: list[tuple[Outcome, MappedRecord]]
          ) -> dict[tuple[int, date, int], list[tuple[Outcome, MappedRecord]]]:
    """Drop items already stored or repeated in the upload; group the rest by run."""
    existing = _existing_slots([rec for _, rec in accepted])
    claimed: dict[tuple, tuple[Outcome, MappedRecord]] = {}
    sender_ids: dict[str, tuple[tuple, Outcome]] = {}
    groups: dict[tuple[int, date, int], list[tuple[Outcome, MappedRecord]]] = defaultdict(list)
    for out, rec in accepted:
        level_name = out.checked[0].name
        moved = _later_run_if_distinct(rec, existing, claimed)
        if moved is not rec:
            out.client_id = None  # re-bound below with the moved run's id
            out.bind(moved)
            rec = moved
        own = rec.candidate.client_id
        if own and sender_ids.setdefault(own, (rec.slot, out))[0] != rec.slot:
            out.fail(Conflict(f"记录编号“{own}”在本次提交中已用于{sender_ids[own][1].position}"
                              "的另一条结果", field="client_id"))
            continue
        if rec.slot in existing:
            text, run_id, _ = existing[rec.slot]
            if _same_value(text, rec.value_text):
                out.store(run_id, duplicate=True)
            else:
                out.fail(Conflict(f"该批次{level_name}已有结果 {text}，与本次的 {rec.value_text} "
                                  "不同；如需修改请在批次页面使用“更正”", field="value"))
        elif rec.slot in claimed:
            first, first_rec = claimed[rec.slot]
            if _same_value(first_rec.value_text, rec.value_text):
                out.same_as = first
            else:
                out.fail(UserError(f"与{first.position}是同一批次的{level_name}，但结果不同",
                                   field="value"))
        else:
            claimed[rec.slot] = (out, rec)
            groups[rec.run_key].append((out, rec))
    return groups


def _later_run_if_distinct(rec: MappedRecord, existing: Mapping, claimed: Mapping
                           ) -> MappedRecord:
    """Move a record without a run number to the day's next run when it is another measurement.

    Many analysers run QC twice a day and send no run number. A result whose slot (run 1 of
    that level on that day) already holds a result measured at another time is the next run,
    not a clash; the same time with another value stays a clash (a correction is explicit).
    """
    if rec.candidate.run_no not in (None, "") or rec.measured_at is None:
        return rec
    moved = rec
    while moved.run_no < 99:
        if moved.slot in existing:
            text, _, when = existing[moved.slot]
        elif moved.slot in claimed:
            text, when = claimed[moved.slot][1].value_text, claimed[moved.slot][1].measured_at
        else:
            return moved
        if when is None or when == rec.measured_at or _same_value(text, rec.value_text):
            return moved  # the same measurement (or no time to tell): let _plan decide
        moved = _with_run_no(rec, moved.run_no + 1)
    return rec


def _with_run_no(rec: MappedRecord, run_no: int) -> MappedRecord:
    """Return ``rec`` in another run, re-deriving the client id if the sender gave none."""
    client_id = rec.client_id
    if not (rec.candidate.client_id or "").strip():
        client_id = derive_client_id(rec.test_system.lab_id, rec.test_system.id, rec.run_date,
                                     run_no, rec.level_index, rec.value_text)
    return dataclasses.replace(rec, run_no=run_no, client_id=client_id)


def _existing_slots(records: Sequence[MappedRecord]) -> dict[tuple, tuple[str, int, Any]]:
    """Return {(ts, date, run, level): (value text, run id, measured at)} of current results."""
    span: dict[int, list[date]] = defaultdict(list)
    for rec in records:
        span[rec.test_system.id].append(rec.run_date)
    found: dict[tuple, tuple[str, int]] = {}
    for ts_id, dates in span.items():
        rows = db.session.execute(
            select(QcRun.run_date, QcRun.run_no, QcLevel.level_index, QcResult.value_text,
                   QcRun.id, QcResult.measured_at)
            .join(QcResult, QcResult.run_id == QcRun.id)
            .join(QcLevel, QcLevel.id == QcResult.qc_level_id)
            .where(QcRun.test_system_id == ts_id, QcResult.is_current,
                   QcRun.run_date >= min(dates), QcRun.run_date <= max(dates)))
        for run_date, run_no, level_index, text, run_id, when in rows:
            found[(ts_id, run_date, run_no, level_index)] = (text, run_id, when)
    return found


def _group_client_id(members: Sequence[tuple[Outcome, MappedRecord]]) -> str:
    """Return the submission id of a run: the record's own for one level, else a hash of all.

    One level keeps the sender's id, so resending it is recognised by submit_run itself;
    several levels share one deterministic id so a resend of the same run is a duplicate.
    """
    ids = sorted(rec.client_id for _, rec in members)
    if len(ids) == 1:
        return ids[0]
    return "g-" + hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()[:48]


def _store(actor: User, lab: Lab, groups: Mapping[tuple[int, date, int], list],
           channel: str) -> None:
    """Store the runs through the one write path; each item gets its run or its error.

    Runs dated within the last :data:`NOTIFY_DAYS` lab-local days alert like live entry;
    older ones (a history import) page nobody, but every reject still opens its record.
    """
    keys = list(groups)
    rows = [iqc.RunInput(key[0], key[1], {str(rec.level_index): rec.value_text
                                          for _, rec in groups[key]},
                         key[2], _group_client_id(groups[key]), _earliest(groups[key]))
            for key in keys]
    if not rows:
        return
    try:
        prepared = iqc.prepare_runs(actor, channel, rows)
    except UserError as exc:  # role or channel: the whole batch
        for members in groups.values():
            for out, _ in members:
                out.fail(exc)
        return
    iqc.store_runs(actor, channel, prepared,
                   notify_from=local_today(lab.timezone) - timedelta(days=NOTIFY_DAYS - 1))
    for key, p in zip(keys, prepared, strict=True):
        for out, _ in groups[key]:
            if p.error is not None:
                out.fail(p.error)
            else:
                out.store(p.run_id, duplicate=p.duplicate)


def _earliest(members) -> datetime | None:
    return min((rec.measured_at for _, rec in members if rec.measured_at), default=None)


def _settle_copies(outcomes: Iterable[Outcome]) -> None:
    """Give rows repeated inside one upload the fate of their first occurrence."""
    for o in outcomes:
        first = o.same_as
        if first is None:
            continue
        if first.status == "error":
            o.status, o.error, o.field, o.code = "error", first.error, first.field, first.code
        else:
            o.store(first.run_id, duplicate=True)


def _attach_verdicts(outcomes: Sequence[Outcome]) -> None:
    """Attach each stored/duplicate item's run verdict: full when few runs, else compact."""
    run_ids = sorted({o.run_id for o in outcomes if o.run_id is not None})
    if not run_ids:
        return
    if len(run_ids) <= FULL_VERDICT_LIMIT:
        runs = {r.id: r for r in db.session.scalars(select(QcRun).where(QcRun.id.in_(run_ids)))}
        verdicts = {rid: iqc.verdict_for(runs[rid]).to_dict() for rid in run_ids}
    else:
        verdicts = _compact_verdicts(run_ids)
    for o in outcomes:
        if o.run_id is not None:
            o.verdict = verdicts.get(o.run_id)


def _compact_verdicts(run_ids: Sequence[int]) -> dict[int, dict]:
    """Return status, fired rules and action of many runs with three queries per chunk."""
    out: dict[int, dict] = {}
    for i in range(0, len(run_ids), _CHUNK):
        chunk = run_ids[i:i + _CHUNK]
        rules: dict[int, list[dict]] = defaultdict(list)
        for run_id, code, role in db.session.execute(
                select(Violation.run_id, Violation.rule_code, Violation.role)
                .where(Violation.run_id.in_(chunk), Violation.active)
                .order_by(Violation.run_id, Violation.id)):
            rules[run_id].append({"rule": code, "role": role})
        actions = dict(db.session.execute(select(CorrectiveAction.run_id, CorrectiveAction.id)
                                          .where(CorrectiveAction.run_id.in_(chunk))).all())
        for run in db.session.execute(select(QcRun.id, QcRun.test_system_id, QcRun.run_date,
                                             QcRun.run_no, QcRun.status)
                                      .where(QcRun.id.in_(chunk))):
            out[run.id] = {"run_id": run.id, "test_system_id": run.test_system_id,
                           "run_date": run.run_date.isoformat(), "run_no": run.run_no,
                           "status": run.status, "status_label": iqc.STATUS_LABEL[run.status],
                           "summary": iqc.STATUS_SUMMARY[run.status],
                           "rules": rules.get(run.id, []), "action_id": actions.get(run.id)}
    return out


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
            row=rec.source.row, instrument=rec.instrument))
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
                     instrument=_text(item.get("instrument"), "instrument", 128))


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


# ---------------------------------------------------------------- top-level imports
def check_uploader(actor: User, lab_id: Any) -> Lab:
    """Return the lab ``actor`` may import into (404 outside scope, 403 for other roles)."""
    if actor.role not in UPLOAD_ROLES:
        raise Forbidden("当前角色不能导入质控结果")
    if lab_id in (None, ""):  # a lab role's own lab, else the first lab in scope
        labs = [actor.lab_id] if actor.lab_id else [lab.id for lab in uploadable_labs(actor)[:1]]
        lab_id = labs[0] if labs else None
    try:
        lab = db.session.get(Lab, int(lab_id)) if lab_id not in (None, "") else None
    except (TypeError, ValueError):
        lab = None
    if lab is None or not can_access_lab(actor, lab.id):
        raise NotFound("实验室不存在或无权访问", field="lab_id")
    return lab


def parse_upload(data: bytes, *, fmt: str | None = None, columns: Mapping | None = None,
                 allowed: Iterable[str] | None = None) -> ParseResult:
    """Parse bytes with the pure parsers; a file that cannot be read at all is a UserError."""
    if not data or not data.strip():
        raise UserError("文件为空", field="file")
    try:
        if fmt is None and allowed is not None:
            fmt = detect_format(data)
            if fmt not in allowed:
                names = "/".join(sorted(allowed)).upper()
                raise UserError(f"无法识别为 {names} 格式", field="file")
        options = {"columns": dict(columns)} if columns else None
        return parse_bytes(data, format=fmt, options=options)
    except ParseError as exc:
        raise UserError(exc.message_zh, field="file") from None


def import_parsed(actor: User, lab: Lab, result: ParseResult, *, channel: str,
                  dry_run: bool = False) -> ImportReport:
    """Import the QC records of a parse result; non-QC (patient) records are only counted."""
    items, skipped = candidates_from_parse(result, lab)
    outcomes = import_candidates(actor, lab, items, channel=channel, dry_run=dry_run)
    return ImportReport(result.format, outcomes, parse_issues(result), skipped, dry_run)


def import_json(actor: User, lab: Lab, body: Any, *, channel: str = "api") -> ImportReport:
    """Import a JSON batch ``{"items": [...]}``; each item or run succeeds or fails alone."""
    if not isinstance(body, Mapping):
        raise UserError("请求内容必须是 JSON 对象", field="body")
    items = body.get("items")
    if not isinstance(items, list):
        raise UserError("items 必须是数组", field="items")
    if not items:
        raise UserError("items 不能为空", field="items")
    if len(items) > MAX_ITEMS:
        raise UserError(f"每次最多提交 {MAX_ITEMS} 条结果（本次 {len(items)} 条）", field="items",
                        status=413)
    cands, problems = candidates_from_json(items)
    outcomes = import_candidates(actor, lab, cands, channel=channel, problems=problems)
    return ImportReport("json", outcomes)


def record_batch(report: ImportReport, lab: Lab, *, channel: str, data: bytes,
                 filename: str | None = None, user: User | None = None,
                 api_key: ApiKey | None = None) -> UploadBatch:
    """Keep one row per upload/message batch (who, what file, counts) for traceability."""
    counts = report.counts
    batch = UploadBatch(lab_id=lab.id, channel=channel, filename=(filename or None) and
                        filename[-255:], file_hash=hashlib.sha256(data).hexdigest(),
                        format=report.format[:16], n_rows=sum(counts.values()),
                        n_stored=counts["stored"], n_duplicate=counts["duplicate"],
                        n_errors=counts["error"], created_by_id=user.id if user and user.id
                        else None, api_key_id=api_key.id if api_key else None)
    db.session.add(batch)
    db.session.flush()
    report.batch_id = batch.id
    return batch


def recent_batches(actor: User, limit: int = 50) -> list[UploadBatch]:
    """Return the latest upload batches of the labs in the actor's scope."""
    return list(db.session.scalars(scoped(select(UploadBatch), actor, UploadBatch.lab_id)
                                   .order_by(UploadBatch.id.desc()).limit(limit)))


def uploadable_labs(actor: User) -> list[Lab]:
    """Return the labs the actor may import into, by hospital and name."""
    if actor.role not in UPLOAD_ROLES:
        return []
    return list(db.session.scalars(scoped(select(Lab).join(Hospital), actor, Lab.id)
                                   .order_by(Hospital.name, Lab.name)))


# ---------------------------------------------------------------- one call per view
def preview_file(actor: User, lab: Lab, data: bytes, columns: Mapping | None = None
                 ) -> ImportReport:
    """Parse, map, validate and judge a file without keeping anything (the upload preview)."""
    result = parse_upload(data, columns=columns)
    return import_parsed(actor, lab, result, channel="upload", dry_run=True)


def commit_file(actor: User, lab: Lab, data: bytes, *, filename: str | None, channel: str,
                columns: Mapping | None = None, fmt: str | None = None,
                allowed: Iterable[str] | None = None, api_key: ApiKey | None = None,
                ) -> ImportReport:
    """Parse and store a file or message batch and record its upload batch row."""
    result = parse_upload(data, fmt=fmt, columns=columns, allowed=allowed)
    report = import_parsed(actor, lab, result, channel=channel)
    record_batch(report, lab, channel=channel, data=data, filename=filename,
                 user=None if api_key else actor, api_key=api_key)
    return report


def commit_json(actor: User, lab: Lab, body: Any, raw: bytes, api_key: ApiKey) -> ImportReport:
    """Store a JSON batch and record its upload batch row."""
    report = import_json(actor, lab, body)
    record_batch(report, lab, channel="api", data=raw, api_key=api_key)
    return report
