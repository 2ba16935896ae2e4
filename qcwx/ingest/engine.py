"""The import engine: map, deduplicate and store candidates through the one write path.

Every channel (CSV/XLSX upload, the JSON batch API, raw ASTM/HL7 messages, the interface
program's file posts) ends in :func:`import_candidates`:

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
It lives apart from :mod:`qcwx.ingest.services` (the channels' entry points) because it is
the one long algorithm of the package. The engine flushes, never commits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from qcwx.catalog.models import QcLevel
from qcwx.errors import Conflict, UserError
from qcwx.extensions import db
from qcwx.ingest.loinc import remember as remember_loincs
from qcwx.ingest.mapping import Candidate, LabMapper, MappedRecord, derive_client_id
from qcwx.ingest.schemas import Outcome
from qcwx.iqc import services as iqc
from qcwx.iqc.models import CorrectiveAction, QcResult, QcRun, Violation
from qcwx.orgs.models import Lab, User
from qcwx.timeutil import local_today

log = logging.getLogger(__name__)

#: Runs dated within this many lab-local days (today included) alert like live entry.
NOTIFY_DAYS = 3
#: Up to this many runs get full verdicts (rules explained); beyond, a compact summary.
FULL_VERDICT_LIMIT = 500
_CHUNK = 500


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
        remember_loincs(lab.id, [(rec.test_system.id, rec.candidate.test_code, rec.candidate.loinc)
                                 for out, rec in accepted if out.status != "error"])
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
            o.retryable = first.retryable
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

