"""Reads behind the report pages: argument parsing, choices, and which report a page shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from qcwx.catalog.models import TestSystem
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import Lab, User
from qcwx.peer.filters import month_end, month_period, recent_months
from qcwx.reports import services
from qcwx.reports.document import Report
from qcwx.reports.models import PublishedReport

#: At most this many test systems may be chosen one by one (else: all).
MAX_TS = 200


def parse_ts_ids(raw: list[str]) -> list[int] | None:
    """Return chosen test-system ids (None = all) from ``ts`` arguments."""
    values = [str(v).strip() for v in raw if str(v).strip()]
    if not values or values == ["all"]:
        return None
    if len(values) > MAX_TS or not all(v.isascii() and v.isdigit() and len(v) <= 12
                                       for v in values):
        raise UserError("检测系统参数无效", field="ts")
    return sorted({int(v) for v in values})


def previous_month(today: date) -> str:
    """Return last month as ``YYYY-MM`` (the default of an evaluation report)."""
    return recent_months(today, 2)[0]


def parse_month(raw, today: date) -> str:
    """Return a valid month ``YYYY-MM`` not after this one (default: last month)."""
    text = str(raw or "").strip() or previous_month(today)
    month_period(text, today)  # raises a UserError naming the field
    return text


def month_choices(today: date, count: int = 12) -> list[str]:
    """Return the months a report may cover, newest first."""
    return recent_months(today, count)[::-1]


def ts_choices(lab: Lab) -> list[TestSystem]:
    """Return the lab's test systems in display order (the report's filter)."""
    return list(db.session.scalars(select(TestSystem).where(TestSystem.lab_id == lab.id)
                                   .order_by(TestSystem.analyte_id, TestSystem.id)))


def report_for_page(lab: Lab, kind: str, params: dict, today: date) -> Report:
    """Return the report a page shows: a published evaluation frozen, anything else live."""
    if kind == "evaluation":
        item = services.published_evaluation(lab.id, params["month"])
        if item is not None:
            return services.frozen_report(item)
    return services.build(kind, lab, params, today)


@dataclass(frozen=True)
class LabReports:
    """One lab of 我的报告 with its published evaluations (newest first)."""

    lab: Lab
    published: list[PublishedReport]


def mine(actor: User, today: date) -> dict:
    """Return what 我的报告 lists: labs in scope with their published evaluations."""
    labs = list(db.session.scalars(scopes.scoped(select(Lab), actor, Lab.id)
                                   .order_by(Lab.hospital_id, Lab.id).limit(500)))
    published: dict[int, list[PublishedReport]] = {}
    if labs:
        rows = db.session.scalars(select(PublishedReport).where(
            PublishedReport.lab_id.in_([lab.id for lab in labs]))
            .order_by(PublishedReport.period.desc()))
        for item in rows:
            published.setdefault(item.lab_id, []).append(item)
    last = previous_month(today)
    return {"labs": [LabReports(lab, published.get(lab.id, [])[:12]) for lab in labs],
            "last_month": last, "last_month_over": month_end(last) < today,
            "links": services.links_of(actor, limit=5)}
