"""The LOINC code analysers send: suggest test systems by it, and keep it for the centre.

A record whose test code maps to nothing may still carry a LOINC code; a lab's active test
systems whose analyte has that code (:class:`qcwx.catalog.codes.AnalyteLoinc`) are then the
candidates, narrowed by QC lot and instrument like any others — never guessed among several.
Stored records' codes are remembered per test system (:class:`ReceivedLoinc`) so the
exception report can flag a code that does not belong to the mapped analyte.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import select

from qcwx.catalog.codes import AnalyteLoinc, loinc_choices
from qcwx.catalog.models import Analyte, TestSystem
from qcwx.extensions import db
from qcwx.ingest.models import ReceivedLoinc
from qcwx.timeutil import utcnow

#: ``last_seen_at`` is rewritten at most this often (each write is an audited update).
TOUCH_EVERY = timedelta(days=1)


def clean_loinc(code: str | None) -> str | None:
    """Return a sent LOINC code stripped, or None when empty or too long to be one."""
    text = (code or "").strip()
    return text if text and len(text) <= 10 else None


def systems_by_loinc(systems: Iterable[TestSystem]) -> dict[str, list[TestSystem]]:
    """Return the active systems of each LOINC code their analytes carry."""
    choices = loinc_choices()
    out: dict[str, list[TestSystem]] = {}
    for ts in systems:
        if ts.active:
            for choice in choices.get(ts.analyte_id, []):
                out.setdefault(choice.loinc, []).append(ts)
    return out


def loinc_hint(loinc: str | None) -> str:
    """Return a sentence naming the catalogue analytes of ``loinc`` (a mapping suggestion)."""
    if not loinc:
        return ""
    names = db.session.scalars(select(Analyte.name).join(
        AnalyteLoinc, AnalyteLoinc.analyte_id == Analyte.id).where(AnalyteLoinc.loinc == loinc)
        .order_by(Analyte.name)).all()
    if not names:
        return f"（仪器发送的 LOINC {loinc} 不在项目编码表中）"
    return f"（仪器发送的 LOINC {loinc} 对应项目：{'、'.join(dict.fromkeys(names))}，" \
           "请为该项目建立检测系统或在“项目映射”中指定）"


def remember(lab_id: int, seen: Iterable[tuple[int, str, str]]) -> None:
    """Record (test system id, test code, LOINC) triples of stored records; flush."""
    wanted = {(ts_id, (code or "")[:64], loinc) for ts_id, code, loinc in seen if loinc}
    if not wanted:
        return
    ts_ids = {ts_id for ts_id, _, _ in wanted}
    rows = {(r.test_system_id, r.source_code, r.loinc): r for r in db.session.scalars(
        select(ReceivedLoinc).where(ReceivedLoinc.test_system_id.in_(ts_ids)))}
    now = utcnow()
    for key in sorted(wanted):
        row = rows.get(key)
        if row is None:
            db.session.add(ReceivedLoinc(lab_id=lab_id, test_system_id=key[0],
                                         source_code=key[1], loinc=key[2],
                                         first_seen_at=now, last_seen_at=now))
        elif now - row.last_seen_at > TOUCH_EVERY:
            row.last_seen_at = now
    db.session.flush()
