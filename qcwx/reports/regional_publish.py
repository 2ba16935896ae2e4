"""Publish a region's report and announce it: frozen, shared by link, sent through the outbox.

:func:`publish_region` freezes the report of a finished month, quarter or year once (the
last month's peer statistics are frozen first, so late results do not move the list) and
stores it as a :class:`~qcwx.reports.models.PublishedReport` naming the region. The first
publication also creates a never-expiring share link of the frozen report and writes one
outbox row (``region_report``) whose template message carries that link to the region's
centre users and the directors of its hospitals; delivery is the alert machinery's, and a
message nobody can receive ends ``unreachable`` — shown on the centre's page, never hidden.

The outbox payload holds the link in clear (the message must carry it); it opens only this
one frozen report, in which labs appear by anonymous code. Services flush; callers commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Select, select

from qcwx.alerts.delivery import dispatch_after_commit
from qcwx.alerts.models import AlertDelivery, OutboxMessage
from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import Hospital, Region, User
from qcwx.peer.filters import Period, month_period, quarter_period, year_period
from qcwx.reports import services
from qcwx.reports.document import Report
from qcwx.reports.models import PublishedReport
from qcwx.reports.regional import KIND, build_region_report, period_key
from qcwx.timeutil import to_local, utcnow
from qcwx.web.urls import public_url

log = logging.getLogger(__name__)
NOBODY = "没有可接收的用户：本区域的质控中心用户和医院主任都未绑定微信，报告发布通知无法送达"


# ------------------------------------------------------------------ scope


def visible_region_ids(actor: User) -> Select:
    """Return a SELECT of the regions whose reports ``actor`` reads (centre readers only).

    The regions of :func:`qcwx.orgs.scopes.region_ids_in_scope`: all for an admin, the
    subtree for a centre or an expert; nothing for lab roles (they get the share link).
    """
    if actor.role not in scopes.CENTRE_READERS:
        return select(Region.id).where(Region.id.is_(None))
    return scopes.region_ids_in_scope(actor)


def region_visible(actor: User, region_id: int | None) -> bool:
    """Return whether ``actor`` may read (and, unless read-only, share) a region's reports."""
    return actor.role in scopes.CENTRE_READERS and scopes.region_in_scope(actor, region_id)


def load_region(actor: User, region_id: int) -> Region:
    """Return a region the actor sees, else 404 (the same answer as a missing region)."""
    region = db.session.get(Region, region_id)
    if region is None or not region_visible(actor, region_id):
        raise NotFound()
    return region


# ------------------------------------------------------------------ periods


def parse_period(month: str | None, quarter: str | None, year: str | None,
                 today: date) -> Period:
    """Return the finished month, quarter or year chosen (default: last month)."""
    chosen = [(k, v) for k, v in (("month", month), ("quarter", quarter), ("year", year))
              if v not in (None, "")]
    if len(chosen) > 1:
        raise UserError("只能选择月份、季度或年度中的一个", field=chosen[1][0])
    if not chosen:
        from qcwx.reports.queries import previous_month

        chosen = [("month", previous_month(today))]
    kind, value = chosen[0]
    parse = {"month": month_period, "quarter": quarter_period, "year": year_period}[kind]
    period = parse(str(value).strip(), today)
    if period.complete_end >= today:
        raise UserError(f"{period.label}尚未结束，只能发布已结束的统计周期", field=kind)
    return period


# ------------------------------------------------------------------ publish and announce


def published_region(region_id: int, key: str) -> PublishedReport | None:
    """Return the published report of a region and period key, if any."""
    return db.session.scalar(select(PublishedReport).where(
        PublishedReport.kind == KIND, PublishedReport.region_id == region_id,
        PublishedReport.period == key))


def published_of(region_id: int, limit: int = 36) -> list[PublishedReport]:
    """Return the region's published reports, newest first."""
    return list(db.session.scalars(select(PublishedReport).where(
        PublishedReport.kind == KIND, PublishedReport.region_id == region_id)
        .order_by(PublishedReport.published_at.desc(), PublishedReport.id.desc()).limit(limit)))


def recipients(region_id: int) -> list[User]:
    """Return the region's active centre users and the directors of its tree's hospitals."""
    return list(db.session.scalars(
        select(User).outerjoin(Hospital, Hospital.id == User.hospital_id)
        .where(User.active, ((User.role == "center") & (User.region_id == region_id))
               | ((User.role == "director")
                  & Hospital.region_id.in_(scopes.region_subtree(region_id))))
        .order_by(User.id)))


@dataclass(frozen=True)
class Published:
    """One region's publication: the frozen report, whether it is new, and its notice."""

    item: PublishedReport
    created: bool
    outbox: OutboxMessage | None


def _freeze_last_month(region_id: int, month: str, today: date) -> None:
    from qcwx.peer.queries import snapshot_for
    from qcwx.peer.services import freeze_month

    if snapshot_for(region_id, month) is None:
        freeze_month(region_id, month, today)


def publish_region(region: Region, period: Period, today: date,
                   actor: User | None = None) -> Published:
    """Freeze and announce the region's report of a finished period; twice is a no-op."""
    if period.complete_end >= today:
        raise UserError(f"{period.label}尚未结束，只能发布已结束的统计周期", field=period.kind)
    key = period_key(period)
    existing = published_region(region.id, key)
    if existing is not None:
        return Published(existing, False, announcement(existing))
    last = period.complete_end.strftime("%Y-%m")
    _freeze_last_month(region.id, last, today)
    now = utcnow()
    from dataclasses import replace

    report = replace(build_region_report(region, period, today), frozen=True,
                     published_at=now.isoformat())
    item = PublishedReport(kind=KIND, lab_id=None, region_id=region.id, period=key,
                           title=report.title[:200], content=report.to_dict(),
                           fingerprint=report.fingerprint(), published_at=now,
                           published_by_id=actor.id if actor else None)
    db.session.add(item)
    db.session.flush()
    return Published(item, True, announce(item, report))


def announce(item: PublishedReport, report: Report) -> OutboxMessage:
    """Create the report's share link and the outbox row announcing it (once per report)."""
    link = services.create_link(None, KIND, None, {"period": item.period}, ttl_days=None,
                                title=report.title, published=item)
    url = public_url(link.path, shared=True)
    users = recipients(item.region_id)
    figures = {f.label: f.value for f in report.figures}
    outbox = OutboxMessage(
        kind="region_report", lab_id=None, dedupe_key=f"region-report-{item.id}", payload={
            "region_id": item.region_id, "published_id": item.id, "title": report.title,
            "url": url, "user_ids": [u.id for u in users], "at": utcnow().isoformat(),
            "fields": {
                "first": f"{report.title}已发布",
                "keyword1": report.period_label,
                "keyword2": f"填报率 {figures.get('填报率', '—')}，在控率 "
                            f"{figures.get('在控率', '—')}，NCCL 通过率 "
                            f"{figures.get('NCCL 通过率', '—')}",
                "keyword3": f"推荐互认 / 需改进 / 不合格："
                            f"{figures.get('推荐互认 / 需改进 / 不合格', '—')}",
                "keyword4": to_local(item.published_at).strftime("%Y-%m-%d %H:%M"),
                "remark": "点击查看完整报告（含互认名单与需关注的实验室），可下载 PDF 与 Excel。"}})
    db.session.add(outbox)
    dispatch_after_commit(outbox)
    if not any(u.wechat_openid for u in users):
        log.warning("region %s report %s: %s", item.region_id, item.id, NOBODY)
    return outbox


def announcement(item: PublishedReport) -> OutboxMessage | None:
    """Return the outbox row that announced ``item`` (None before it was announced)."""
    return db.session.scalar(select(OutboxMessage).where(
        OutboxMessage.dedupe_key == f"region-report-{item.id}"))


def deliveries(outbox: OutboxMessage | None) -> list[AlertDelivery]:
    """Return the announcement's deliveries (one per recipient reached or tried)."""
    if outbox is None:
        return []
    return list(db.session.scalars(select(AlertDelivery).where(
        AlertDelivery.outbox_id == outbox.id).order_by(AlertDelivery.id)))


def publish_regions(period: Period, today: date, *, region_codes: list[str] | None = None,
                    commit=None) -> list[tuple[Region, Published]]:
    """Publish every region's (or some regions') report of ``period``; one commit each."""
    stmt = select(Region).order_by(Region.id)
    if region_codes:
        stmt = stmt.where(Region.code.in_(region_codes))
    out = []
    for region_id in [r.id for r in db.session.scalars(stmt)]:
        region = db.session.get(Region, region_id)
        out.append((region, publish_region(region, period, today)))
        if commit:
            commit()
    return out
