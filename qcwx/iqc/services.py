"""Store QC runs through one write path, whatever the channel, and judge them.

Every channel — phone form, QR scan, mini-program, CSV/XLSX upload, the lab-interface API,
the demo seed — parses its input into plain :class:`RunInput` rows and calls

1. :func:`prepare_runs` — every check, for one run or 100,000: role, scope, channel (set by
   the route, never by the client), test system active, date, run number, levels, values
   and their plausible range, the client id (idempotent per lab: the same id and payload is a
   duplicate, another payload a conflict), and conflicts with stored results and within the
   batch. Each row gets its own error, so one bad row never blocks the others;
2. :func:`store_runs` — one transaction (savepoint per test system): Core inserts of runs,
   submissions and results, then **one re-judge per test system from its earliest changed
   run** (:func:`qcwx.iqc.evaluation.evaluate_from`), which equals judging from scratch.
   Alerts for the runs that should page someone go to the outbox in the same transaction.

:func:`submit_run` is the one-run form of the two. Services flush, never commit.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.exc import IntegrityError

from qcwx.audit.services import write_audit_rows
from qcwx.catalog.models import QcLevel, TestSystem
from qcwx.errors import Conflict, RetryableConflict, UserError
from qcwx.extensions import db
from qcwx.iqc import bulk, window
from qcwx.iqc.corrections import correct_result  # noqa: F401  (re-exported: the write API)
from qcwx.iqc.evaluation import (  # noqa: F401  (re-exported: the verdict API of this package)
    STATUS_LABEL,
    STATUS_SUMMARY,
    FiredRule,
    FirstRun,
    Judgement,
    LevelValue,
    RunVerdict,
    evaluate_from,
    judge_before_insert,
    verdict_for,
)
from qcwx.iqc.models import QcRun
from qcwx.iqc.queries import next_run_no  # noqa: F401  (re-exported for the entry pages)
from qcwx.iqc.validation import (  # noqa: F401  (re-exported: the checks of this package)
    CHANNELS,
    MAX_CLIENT_ID,
    MAX_REASON,
    MAX_VALUE_TEXT,
    SUBMITTER_ROLES,
    check_plausible,
    check_plausible_date,
    check_run_date,
    check_run_no,
    check_submitter,
    clean_text,
    level_keys,
    parse_value,
    payload_hash,
    preload_submission,
    resolve_levels,
)
from qcwx.iqc.validation import (
    load_for_submission as load_test_system,
)
from qcwx.orgs.models import User
from qcwx.timeutil import utcnow

log = logging.getLogger(__name__)

ERROR_KIND_HINT = {"随机误差": "random", "系统误差": "systematic"}
RACE_MESSAGE = "该批次正在被同时写入，请稍后重试"


# ---------------------------------------------------------------- the one write path
@dataclass(frozen=True)
class RunInput:
    """One run as a channel parsed it: plain values, nothing resolved yet.

    ``values`` maps a level (its id as ``"id:<n>"``, its index ``1..3`` or its name) to
    the value as typed. ``entered_at`` defaults to now (history loaders set their own).
    ``date_given`` is False when the client sent no date and ``run_date`` is the server's
    today: the date is then left out of the payload digest, so a resend after midnight is
    still the same submission (a duplicate), not a reused client id (409).
    """

    test_system_id: int
    run_date: date
    values: Mapping
    run_no: int | str | None = None
    client_id: str | None = None
    measured_at: datetime | None = None
    entered_at: datetime | None = None
    date_given: bool = True


@dataclass(eq=False)
class PreparedRun:
    """A checked :class:`RunInput`: its error, or everything :func:`store_runs` writes."""

    input: RunInput
    test_system: TestSystem | None = None
    run_no: int = 1
    resolved: dict = field(default_factory=dict)
    client_id: str = ""
    digest: str = ""
    error: UserError | None = None
    run_id: int | None = None
    duplicate: bool = False
    same_as: PreparedRun | None = None
    #: {(date, run no): run id} of the stored runs around this row, read while checking it
    #: (None: not read; :func:`_store_system` then reads it itself)
    stored_runs: dict | None = None
    #: what else was read with ``stored_runs`` (None: judging reads it itself)
    state: bulk.StoreState | None = None
    verdict: RunVerdict | None = None

    @property
    def key(self) -> tuple[int, date, int]:
        """Return (test system id, run date, run number)."""
        return self.test_system.id, self.input.run_date, self.run_no

    @property
    def pending(self) -> bool:
        """Return True while the run still has to be written."""
        return self.error is None and not self.duplicate and self.same_as is None


def prepare_runs(actor: User, channel: str, rows: Sequence[RunInput]) -> list[PreparedRun]:
    """Check ``rows`` as one batch; return one :class:`PreparedRun` each, errors inside.

    The role and channel apply to the whole batch (raised); everything else is per row.
    """
    check_submitter(actor)
    if channel not in CHANNELS:
        raise UserError("录入渠道无效", field="channel")
    systems: dict[object, TestSystem | UserError] = {}
    keys: dict[int, dict[str, QcLevel]] = {}
    out = []
    for row in rows:
        p = PreparedRun(row)
        try:
            p.test_system = _system(actor, row.test_system_id, systems)
            ts = p.test_system
            check_run_date(ts, row.run_date)
            p.run_no = check_run_no(row.run_no)
            if ts.id not in keys:
                keys[ts.id] = level_keys(ts)
            p.resolved = resolve_levels(ts, row.values, keys[ts.id])
            p.client_id = str(row.client_id or "").strip() or f"srv-{uuid.uuid4()}"
            if len(p.client_id) > MAX_CLIENT_ID:
                raise UserError(f"记录编号过长（最多{MAX_CLIENT_ID}个字符）", field="client_id")
            p.digest = payload_hash(ts.id, row.run_date if row.date_given else None, p.run_no,
                                    p.resolved)
        except UserError as exc:
            p.error = exc
        out.append(p)
    _check_against_store([p for p in out if p.error is None])
    return out


def _system(actor: User, ts_id, cache: dict) -> TestSystem:
    if ts_id not in cache:
        try:
            ts = load_test_system(actor, ts_id)
            if not ts.active:
                raise UserError("该检测系统已停用", field="test_system_id")
            cache[ts_id] = ts
        except UserError as exc:
            cache[ts_id] = exc
    found = cache[ts_id]
    if isinstance(found, UserError):
        raise copy.copy(found)  # a fresh instance of the same class (404 stays 404)
    return found


def _check_against_store(prepared: list[PreparedRun]) -> None:
    """Mark resends as duplicates and clashes with stored or earlier rows as conflicts.

    A batch of one lab and one test system (every live submission) reads its client ids and
    its runs' levels in one statement (:func:`bulk.store_state`); larger mixes read per lab
    and per system.
    """
    by_lab: dict[int, list[PreparedRun]] = defaultdict(list)
    by_ts: dict[int, list[PreparedRun]] = defaultdict(list)
    for p in prepared:
        by_lab[p.test_system.lab_id].append(p)
    state = None
    if len(by_lab) == 1 and len({p.test_system.id for p in prepared}) == 1 \
            and len(prepared) <= bulk.CHUNK:
        state = bulk.store_state(prepared[0].test_system.lab_id, [p.client_id for p in prepared],
                                 prepared[0].test_system,
                                 [p.input.run_date for p in prepared])
    for lab_id, items in by_lab.items():
        priors = state.priors if state is not None else bulk.prior_submissions(
            lab_id, [p.client_id for p in items])
        seen: dict[str, PreparedRun] = {}
        for p in items:
            prior = priors.get(p.client_id)
            first = seen.setdefault(p.client_id, p)
            if prior is not None and prior[0] == p.digest:
                p.duplicate, p.run_id = True, prior[1]
            elif prior is not None or first.digest != p.digest:
                p.error = Conflict("该记录编号已用于另一组结果，请勿重复使用", field="client_id")
            elif first is not p:
                p.same_as = first
            else:
                by_ts[p.test_system.id].append(p)
    for ts_id, items in by_ts.items():
        stored: dict = state.run_ids if state is not None else {}
        taken = state.levels if state is not None else bulk.current_levels(
            ts_id, [p.input.run_date for p in items], stored)
        for p in items:
            p.stored_runs = stored
            p.state = state
            held = taken.setdefault(p.key[1:], set())
            clash = [lv.name for lv in p.resolved if lv.id in held]
            if clash:
                p.error = Conflict(f"该批次已有{'、'.join(clash)}的结果；如需修改请使用“更正”"
                                   "并填写原因", field="values")
            else:
                held.update(lv.id for lv in p.resolved)


def store_runs(actor: User, channel: str, prepared: Sequence[PreparedRun], *,
               notify_from: date | None = None, savepoint: bool = True) -> None:
    """Write the pending runs of ``prepared`` and re-judge each test system once.

    Each test system is stored in its own savepoint; a concurrent writer (an integrity
    error) sends its runs through one savepoint each, so a race refuses only the raced run,
    with a 409, never a partial write. New runs dated ``notify_from`` or later alert.

    ``savepoint=False`` (one run, from :func:`submit_run`): no savepoint, so an integrity
    error fails the transaction and reaches the caller — the capture views run the whole
    request again (:func:`qcwx.web.contention.retry_on_contention`), which then answers as a
    resend does. Two statements less per submission (issue 14).
    """
    by_ts: dict[int, list[PreparedRun]] = defaultdict(list)
    for p in prepared:
        if p.pending:
            by_ts[p.test_system.id].append(p)
    single = not savepoint and len(prepared) == 1
    for items in by_ts.values():
        if single:
            _store_system(actor, channel, items, notify_from)
            continue
        try:
            with db.session.begin_nested():
                _store_system(actor, channel, items, notify_from)
        except IntegrityError:
            log.warning("runs of test system %s raced a writer; storing run by run",
                        items[0].test_system.id)
            kept, ids, fresh = [], {}, set()
            for group in _by_run(items).values():
                try:
                    with db.session.begin_nested():
                        done = _store_system(actor, channel, group, notify_from, retry=True,
                                             judge=False)
                    kept += group
                    ids.update(done[0])
                    fresh |= done[1]
                except IntegrityError:
                    for p in group:
                        p.error = RetryableConflict(RACE_MESSAGE, field="run_no")
            if kept:  # one re-judge from the earliest stored run, not one per run
                _judge_system(actor, kept, notify_from, ids, fresh)
        if len(prepared) > 50:
            bulk.release_runs()
    for p in prepared:
        if p.same_as is not None:
            p.error, p.run_id, p.duplicate = p.same_as.error, p.same_as.run_id, True


def _by_run(items: list[PreparedRun]) -> dict[tuple, list[PreparedRun]]:
    groups: dict[tuple, list[PreparedRun]] = defaultdict(list)
    for p in items:
        groups[p.key].append(p)
    return groups


def _store_system(actor: User, channel: str, items: list[PreparedRun],
                  notify_from: date | None, *, retry: bool = False,
                  judge: bool = True) -> tuple[dict, set]:
    """Insert one test system's runs, submissions and results; return run ids by key, new ids.

    Re-judges unless ``judge=False``: the fallback after a race stores each run, then judges
    once (per run, a 200-run file took 20–50 s). The run ids read while checking the rows
    are reused, except on that retry (another writer may have added runs since).
    """
    ts = items[0].test_system
    now = utcnow()
    runs = _by_run(items)
    known = items[0].stored_runs
    if retry or known is None or any(p.stored_runs is not known for p in items):
        ids = bulk.run_ids(ts.id, [key[1] for key in runs])
    else:
        ids = dict(known)
    fresh_keys = [key[1:] for key in runs if key[1:] not in ids]
    new = [{"test_system_id": ts.id, "run_date": key[1], "run_no": key[2], "status": "pending",
            "evaluated_at": None, "created_at": min(p.input.entered_at or now for p in group)}
           for key, group in runs.items() if key[1:] not in ids]
    state = items[0].state if all(p.state is items[0].state for p in items) else None
    early = None
    if judge and state is not None and len(runs) == len(new) == 1:  # one new run: judged first
        early = judge_before_insert(ts, state.newest, state.config, new[0], [
            (level.id, value, text) for p in items for level, (text, value) in p.resolved.items()])
    audit: list[dict] = []
    run_audit: list[dict] = []  # written after judging, with the verdicts of the new runs
    ids.update(bulk.insert_runs(ts.id, new, run_audit))
    fresh = {ids[k] for k in fresh_keys}
    if early is not None:
        window.adopt(early.runs[-1], ids[fresh_keys[0]], early.window)
    subs = bulk.insert_submissions(ts.lab_id, [
        {"lab_id": ts.lab_id, "client_id": p.client_id, "payload_hash": p.digest,
         "channel": channel, "run_id": ids[p.key[1:]], "actor_id": actor.id,
         "created_at": p.input.entered_at or now} for p in items], audit)
    results = []
    for p in items:
        p.run_id = ids[p.key[1:]]
        for level, (text, value) in p.resolved.items():
            results.append({"run_id": p.run_id, "qc_level_id": level.id, "version": 1,
                            "is_current": True, "value_text": text, "value": value, "z": None,
                            "control_limit_id": None, "measured_at": p.input.measured_at,
                            "entered_at": p.input.entered_at or now, "entered_by_id": actor.id,
                            "submission_id": subs[p.client_id], "reason": None})
    bulk.insert_results(results, audit)
    by_key = {key: ids[key[1:]] for key in runs}
    if judge:
        judged: dict[int, tuple] = {}
        _judge_system(actor, items, notify_from, by_key, fresh, judged, state and state.config,
                      judgement=early)
        inserted = {ids[(r["run_date"], r["run_no"])]: (r["status"], r["evaluated_at"])
                    for r in new}
        bulk.set_verdicts({i: v for i, v in judged.items() if inserted.get(i) != v}, run_audit)
    write_audit_rows(run_audit + audit)  # one statement for the three tables
    return by_key, fresh


def _judge_system(actor: User, items: list[PreparedRun], notify_from: date | None,
                  ids: dict[tuple, int], fresh: set[int], judged: dict | None = None,
                  config: tuple | None = None, judgement: Judgement | None = None) -> None:
    """Re-judge from the earliest run in ``ids`` (``config``, ``judgement``: see evaluate_from)."""
    ts = items[0].test_system
    first_key = min(ids)
    first = FirstRun(ids[first_key], *first_key[1:])
    held = db.session.identity_map.get(db.session.identity_key(QcRun, first.id))
    if held is not None:
        db.session.expire(held, ["results"])
    alert = {ids[key] for key in ids if notify_from is not None and key[1] >= notify_from}
    verdict = evaluate_from(ts, first, notify=alert, actor=actor, fresh=fresh, judged=judged,
                            config=config, judgement=judgement)
    for p in items:
        if p.run_id == verdict.run_id:
            p.verdict = verdict


# ---------------------------------------------------------------- one run
def submit_run(
    actor: User,
    *,
    test_system_id: int,
    run_date: date,
    values: Mapping,
    run_no: int | None = None,
    client_id: str | None = None,
    channel: str = "h5",
    measured_at: datetime | None = None,
    notify: bool = True,
    date_given: bool = True,
) -> RunVerdict:
    """Validate, store and evaluate one run of one test system; return its verdict.

    Resending the same ``client_id`` (per lab) returns the stored verdict and stores
    nothing; the same id with different values is a conflict (409). ``date_given``: see
    :class:`RunInput`.
    """
    (p,) = prepare_runs(actor, channel, [RunInput(test_system_id, run_date, values, run_no,
                                                  client_id, measured_at,
                                                  date_given=date_given)])
    if p.error is None and not p.duplicate:
        store_runs(actor, channel, [p], notify_from=run_date if notify else None,
                   savepoint=False)
    if p.error is not None:
        raise p.error
    if p.verdict is not None:  # built while judging: reading the run back costs 6 statements
        return p.verdict
    return verdict_for(db.session.get(QcRun, p.run_id), duplicate=p.duplicate)
