"""Share links and publication: who may share what, for how long, and what a link opens.

A link is scoped to exactly one report: ``kind`` + lab + ``params`` (test systems and the
period as chosen, so "本月" stays live) or one published (frozen) evaluation. The token is
``secrets.token_urlsafe(24)`` (192 bits) and only its SHA-256 is stored; an unknown, expired
or revoked token opens nothing. Services flush, never commit (the request or task does).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy import select, update

from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import Lab, User
from qcwx.reports import periods
from qcwx.reports.document import Report
from qcwx.reports.models import REPORT_KINDS, PublishedReport, ShareLink
from qcwx.timeutil import utcnow

#: Default life of a share link, and the choices offered (days; 0 = never expires).
DEFAULT_TTL_DAYS = 30
TTL_CHOICES = (1, 7, 30, 90, 365)
_TOKEN_BYTES = 24
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class LinkGone(UserError):
    """The link existed but has expired or been revoked (410, a Chinese page, no data)."""

    status = 410


def hash_token(token: str) -> str:
    """Return the stored form of a token (SHA-256, hex)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _valid_token_text(token: str) -> bool:
    return 20 <= len(token) <= 64 and set(token) <= _TOKEN_CHARS


# ---------------------------------------------------------------- building reports


def build(kind: str, lab: Lab, params: dict, today: date) -> Report:
    """Build the live report ``kind`` of ``lab`` from a link's or a page's ``params``."""
    if kind == "dynamic":
        from qcwx.reports.dynamic import build_dynamic

        spec = params.get("period") or {"kind": "this_month"}
        report = build_dynamic(lab, params.get("ts_ids"), periods.resolve(spec, today), today)
        extra = {"period": spec}
        if params.get("comparison_ids"):  # saved instrument comparisons the user chose
            from qcwx.analytics import report_section

            report = replace(report, sections=report.sections + report_section.sections(
                lab, params["comparison_ids"]))
            extra["comparison_ids"] = params["comparison_ids"]
        return _with_params(report, {**report.params, **extra})
    if kind == "evaluation":
        from qcwx.reports.evaluation import build_evaluation

        return build_evaluation(lab, params["month"], today)
    raise UserError(f"报告类型无效：{kind}", field="kind")


def _with_params(report: Report, params: dict) -> Report:
    return replace(report, params=params)


def published_evaluation(lab_id: int, month: str) -> PublishedReport | None:
    """Return the published evaluation of ``lab_id`` for ``month``, if any."""
    return db.session.scalar(select(PublishedReport).where(
        PublishedReport.kind == "evaluation", PublishedReport.lab_id == lab_id,
        PublishedReport.period == month))


def frozen_report(item: PublishedReport) -> Report:
    """Return the report as it was published, with the expert comments added since.

    The published content never changes; comments live in their own rows and show in a
    section after the generated conclusions (so the PDF cache key changes with them).
    """
    from qcwx.reports.comments import with_comments

    return with_comments(Report.from_dict(item.content), item)


def publish_evaluation(lab: Lab, month: str, today: date, actor: User | None = None
                       ) -> PublishedReport:
    """Freeze the evaluation of ``lab`` for a month that is over; publishing twice is a no-op.

    Its numbers never change afterwards: late data shows in the next month's report.
    """
    from qcwx.peer.filters import month_end, month_period

    month_period(month, today)  # validates the text
    if month_end(month) >= today:
        raise UserError("只能发布已结束月份的评测报告", field="month")
    existing = published_evaluation(lab.id, month)
    if existing is not None:
        return existing
    now = utcnow()
    report = replace(build("evaluation", lab, {"month": month}, today), frozen=True,
                     published_at=now.isoformat())
    item = PublishedReport(kind="evaluation", lab_id=lab.id, period=month,
                           title=report.title[:200], content=report.to_dict(),
                           fingerprint=report.fingerprint(), published_at=now,
                           published_by_id=actor.id if actor else None)
    db.session.add(item)
    db.session.flush()
    return item


# ---------------------------------------------------------------- share links


@dataclass(frozen=True)
class NewLink:
    """A link just created: the only moment its token is known in clear."""

    link: ShareLink
    token: str

    @property
    def path(self) -> str:
        """Return the link's path (``/r/<token>``)."""
        return f"/r/{self.token}"


def parse_ttl(raw, *, published: bool) -> int | None:
    """Return the life in days (None = never; only a published evaluation may never expire)."""
    text = str(raw if raw is not None else DEFAULT_TTL_DAYS).strip()
    if text in ("0", "never") and published:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) not in TTL_CHOICES:
        choices = "、".join(str(d) for d in TTL_CHOICES)
        never = "，已发布的评测报告也可选永久" if published else ""
        raise UserError(f"有效期应为 {choices} 天之一{never}", field="ttl_days")
    return int(text)


def create_link(actor: User | None, kind: str, lab: Lab | None, params: dict, *,
                ttl_days: int | None = DEFAULT_TTL_DAYS, title: str,
                published: PublishedReport | None = None) -> NewLink:
    """Create a share link; ``actor`` None is an operator at the command line (or a task).

    Whoever may see the report may share it: the lab must be in the actor's scope; a
    region's report (``lab`` None, ``published`` naming the region) needs the region's centre.
    """
    if kind not in REPORT_KINDS:
        raise UserError(f"报告类型无效：{kind}", field="kind")
    region_id = published.region_id if published is not None and lab is None else None
    if lab is None and region_id is None:
        raise UserError("分享链接须指向一个实验室或区域的报告", field="kind")
    if actor is not None and not _may_see(actor, lab.id if lab else None, region_id):
        raise NotFound()
    if ttl_days is None and published is None:
        raise UserError("只有已发布的评测报告可以永久有效", field="ttl_days")
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    now = utcnow()
    link = ShareLink(
        token_hash=hash_token(token), kind=kind, lab_id=lab.id if lab else None,
        region_id=region_id, params=params,
        published_id=published.id if published else None, title=title[:200],
        created_by_id=actor.id if actor else None, created_at=now,
        expires_at=now + timedelta(days=ttl_days) if ttl_days else None, view_count=0)
    db.session.add(link)
    db.session.flush()
    return NewLink(link, token)


def find_link(token: str, *, now: datetime | None = None) -> ShareLink:
    """Return the live link of ``token``: 404 when unknown or malformed, 410 when it ended."""
    if not isinstance(token, str) or not _valid_token_text(token):
        raise NotFound("链接无效：请向分享者索取新的链接")
    link = db.session.scalar(select(ShareLink).where(ShareLink.token_hash == hash_token(token)))
    if link is None:
        raise NotFound("链接无效：请向分享者索取新的链接")
    if link.revoked_at is not None:
        raise LinkGone("该分享链接已被撤销，报告不再公开")
    if link.expires_at is not None and link.expires_at <= (now or utcnow()):
        raise LinkGone("该分享链接已过期，请向分享者索取新的链接")
    return link


def count_view(link: ShareLink) -> None:
    """Count one opening of the page (an atomic increment, safe under concurrent views)."""
    db.session.execute(update(ShareLink).where(ShareLink.id == link.id).values(
        view_count=ShareLink.view_count + 1, last_viewed_at=utcnow()))


def report_of_link(link: ShareLink, today: date) -> Report:
    """Return what the link opens: the frozen evaluation, or the live report as scoped."""
    if link.published is not None:
        return frozen_report(link.published)
    return build(link.kind, link.lab, dict(link.params or {}), today)


def _may_see(actor: User, lab_id: int | None, region_id: int | None) -> bool:
    """Return whether ``actor`` sees a lab's report (its scope) or a region's (its centre)."""
    if lab_id is not None:
        return scopes.can_access_lab(actor, lab_id)
    from qcwx.reports.regional_publish import region_visible

    return region_visible(actor, region_id)


def links_of(actor: User, limit: int = 200) -> list[ShareLink]:
    """Return the links ``actor`` may manage: their own, and for centre/admin their scope's."""
    stmt = select(ShareLink).order_by(ShareLink.created_at.desc(), ShareLink.id.desc())
    if actor.role in scopes.SEES_IDENTITIES:
        from qcwx.reports.regional_publish import visible_region_ids

        stmt = stmt.where(scopes.in_scope(actor, ShareLink.lab_id)
                          | ShareLink.region_id.in_(visible_region_ids(actor)))
    else:
        stmt = stmt.where(ShareLink.created_by_id == actor.id)
    return list(db.session.scalars(stmt.limit(limit)))


def revoke_link(actor: User, link_id: int) -> ShareLink:
    """Revoke a link: its creator, or the centre/admin for labs in their scope."""
    link = db.session.get(ShareLink, link_id)
    if link is None or not can_manage(actor, link):
        raise NotFound()
    if link.revoked_at is None:
        link.revoked_at = utcnow()
        link.revoked_by_id = actor.id
        db.session.flush()
    return link


def can_manage(actor: User, link: ShareLink) -> bool:
    """Return whether ``actor`` may revoke ``link``: its creator or the centre, lab in scope."""
    owner = link.created_by_id == actor.id or actor.role in scopes.SEES_IDENTITIES
    return owner and _may_see(actor, link.lab_id, link.region_id)


def managed_link(actor: User, link_id: int) -> ShareLink:
    """Return a link ``actor`` may manage, else 404."""
    link = db.session.get(ShareLink, link_id)
    if link is None or not can_manage(actor, link):
        raise NotFound()
    return link


def share_report(actor: User | None, lab: Lab, kind: str, params: dict, ttl_raw,
                 today: date) -> NewLink:
    """Create the link of a report as the page or the CLI chose it.

    An evaluation of a month that has been published links to the frozen snapshot (and may
    never expire); otherwise the link opens the live report.
    """
    published = published_evaluation(lab.id, params["month"]) if kind == "evaluation" else None
    ttl = parse_ttl(ttl_raw, published=published is not None)
    report = frozen_report(published) if published else build(kind, lab, params, today)
    return create_link(actor, kind, lab, report.params if published is None else params,
                       ttl_days=ttl, title=report.title, published=published)


def is_share_page(url: str | None) -> bool:
    """Return whether ``url``'s path is ``/r/<token>`` of a live link (host checked later)."""
    from urllib.parse import urlsplit

    path = urlsplit(str(url or "").split("#", 1)[0]).path
    parts = path.split("/")
    if len(parts) != 3 or parts[1] != "r":
        return False
    try:
        find_link(parts[2])
    except UserError:
        return False
    return True


def publish_month(month: str, today: date, *, lab_codes: list[str] | None = None,
                  commit=None) -> tuple[int, int]:
    """Freeze ``month``'s peer statistics (every region), then publish each lab's evaluation.

    Returns ``(published, already_there)``. ``commit`` (the task's or command's commit) is
    called after the freeze and after each lab, so a long run never holds the database's
    write lock for more than one report (SQLite serves the site meanwhile).
    """
    from qcwx.peer.services import freeze_month

    freeze_month(None, month, today)
    if commit:
        commit()
    stmt = select(Lab).order_by(Lab.id)
    if lab_codes:
        stmt = stmt.where(Lab.code.in_(lab_codes))
    done = existing = 0
    for lab_id in [lab.id for lab in db.session.scalars(stmt)]:
        if published_evaluation(lab_id, month) is not None:
            existing += 1
            continue
        publish_evaluation(db.session.get(Lab, lab_id), month, today)
        done += 1
        if commit:
            commit()
    return done, existing
