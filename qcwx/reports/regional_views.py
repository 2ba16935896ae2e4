"""Pages and command of the regional report: list, publish button, frozen page, files.

Registered on the reports blueprint (:mod:`qcwx.reports.views` imports this module). Only
the region's centre and admins open these pages; everyone else reads the report through
its share link. Views parse, check scope (:func:`~qcwx.reports.regional_publish.load_region`),
call one service, commit after a write.
"""

from __future__ import annotations

import click
from flask import flash, redirect, render_template, request, session, url_for
from flask_login import login_required

from qcwx.errors import ConfigError, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.peer.filters import calendar_options, int_arg
from qcwx.reports import exports, services
from qcwx.reports import regional_publish as publish
from qcwx.reports.models import PublishedReport
from qcwx.reports.views import _NEW_LINK_KEY, bp
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor


def _require_reader() -> None:
    if current_actor().role not in scopes.CENTRE_READERS:
        raise Forbidden("只有区域质控中心可以查看和发布区域质控报告")


def _region_id(args) -> int:
    from qcwx.peer.queries import region_id_for

    _require_reader()
    return region_id_for(current_actor(), int_arg(args, "region", "区域"))


def _item(item_id: int) -> PublishedReport:
    _require_reader()
    item = db.session.get(PublishedReport, item_id)
    if item is None or item.region_id is None or not publish.region_visible(
            current_actor(), item.region_id):
        raise NotFound()
    return item


@bp.get("/reports/region/")
@login_required
def region_reports():
    """区域质控报告: the region's published reports and the publish form."""
    region = publish.load_region(current_actor(), _region_id(request.args))
    today = local_today()
    items = publish.published_of(region.id)
    return render_template(
        "reports/region_index.html", region=region, items=items,
        notices={i.id: publish.announcement(i) for i in items},
        options={k: calendar_options(k, today)[1:] for k in ("month", "quarter", "year")})


@bp.post("/reports/region/publish")
@login_required
def region_publish():
    """Publish (once) the region's report of a finished month, quarter or year."""
    actor = current_actor()
    region = publish.load_region(actor, _region_id(request.form))
    form = request.form
    kind = form.get("period") or "month"
    if kind not in ("month", "quarter", "year"):
        raise UserError(f"统计周期无效：{kind[:20]}", field="period")
    period = publish.parse_period(form.get("month") if kind == "month" else None,
                                  form.get("quarter") if kind == "quarter" else None,
                                  form.get("year") if kind == "year" else None, local_today())
    done = publish.publish_region(region, period, local_today(), actor)
    db.session.commit()
    flash(f"已发布：{done.item.title}" if done.created else f"{done.item.title}此前已发布")
    return redirect(url_for("reports.region_report", item_id=done.item.id))


@bp.get("/reports/region/<int:item_id>")
@login_required
def region_report(item_id: int):
    """A published regional report with its announcement's delivery and share/download."""
    item = _item(item_id)
    notice = publish.announcement(item)
    return render_template(
        "reports/region.html", item=item, report=services.frozen_report(item), notice=notice,
        deliveries=publish.deliveries(notice), nobody=publish.NOBODY,
        ttl_choices=services.TTL_CHOICES)


@bp.get("/reports/region/<int:item_id>.<fmt>")
@login_required
def region_report_file(item_id: int, fmt: str):
    """The published regional report as PDF or Excel."""
    return exports.download(services.frozen_report(_item(item_id)), fmt)


@bp.post("/reports/region/<int:item_id>/share")
@login_required
def region_share(item_id: int):
    """Create another share link of a published regional report (shown once with its QR)."""
    item = _item(item_id)
    ttl = services.parse_ttl(request.form.get("ttl_days"), published=True)
    created = services.create_link(current_actor(), publish.KIND, None,
                                   {"period": item.period}, ttl_days=ttl, title=item.title,
                                   published=item)
    db.session.commit()
    session[_NEW_LINK_KEY] = {"id": created.link.id, "token": created.token}
    return redirect(url_for("reports.link_created", link_id=created.link.id))


@bp.cli.command("publish-region")
@click.option("--month", default=None, help="YYYY-MM (default: last month).")
@click.option("--quarter", default=None, help="YYYY-Qn, e.g. 2026-Q3.")
@click.option("--year", default=None, help="YYYY.")
@click.option("--region", "region_codes", multiple=True,
              help="Only these regions' codes (default: every region).")
def publish_region_command(month: str | None, quarter: str | None, year: str | None,
                           region_codes: tuple[str, ...]) -> None:
    """Publish and announce regional reports of a finished period (idempotent)."""
    today = local_today()
    try:
        period = publish.parse_period(month, quarter, year, today)
        done = publish.publish_regions(period, today, region_codes=list(region_codes),
                                       commit=db.session.commit)
    except UserError as exc:
        raise click.ClickException(exc.message) from None
    except ConfigError as exc:
        raise click.ClickException(f"{exc}: set QCWX_BASE_URL to the public address") from None
    for region, result in done:
        state = "published" if result.created else "already published"
        users = len((result.outbox.payload or {}).get("user_ids", [])) if result.outbox else 0
        click.echo(f"{region.code} {period.label}: {state}; announced to {users} user(s)")
        if result.outbox is not None:
            click.echo(f"  share link: {result.outbox.payload['url']}")
    if not done:
        raise click.ClickException("no region matched")

