"""Report pages (signed in), share links, and the public shared page ``/r/<token>``.

Views parse arguments, check scope and call :mod:`qcwx.reports.services`; the report itself
is a :class:`qcwx.reports.document.Report` rendered by one template (``reports/_body.html``)
on every surface: the page, the shared page, the PDF.
"""

from __future__ import annotations

import io

import click
import qrcode
import qrcode.image.svg
from flask import (
    Blueprint,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import login_required

from qcwx.analytics import report_section
from qcwx.errors import ConfigError, NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.orgs.models import Lab
from qcwx.reports import comments, exports, firstpaint, periods, queries, services
from qcwx.reports.models import REPORT_KINDS
from qcwx.timeutil import local_today, utcnow
from qcwx.web.forms import current_actor
from qcwx.web.urls import public_url

bp = Blueprint("reports", __name__)
_NEW_LINK_KEY = "reports.new_link"


def _lab(lab_id: int) -> Lab:
    lab = db.session.get(Lab, lab_id)
    if lab is None or not scopes.can_access_lab(current_actor(), lab.id):
        raise NotFound()
    return lab


def _params(kind: str, args) -> dict:
    """Return a report's params from query or form arguments (validated)."""
    if kind == "dynamic":
        ts = args.getlist("ts")
        ts_ids = queries.parse_ts_ids(ts)
        params = {"ts_ids": ts_ids, "period": periods.parse_spec(args)}
        chosen = report_section.parse_ids(args.getlist("cmp"))  # optional comparisons
        return params | ({"comparison_ids": chosen} if chosen else {})
    if kind == "evaluation":
        return {"month": queries.parse_month(args.get("month"), local_today())}
    raise NotFound()


# ---------------------------------------------------------------- signed-in pages


@bp.get("/reports/")
@login_required
def mine():
    """我的报告: each lab in scope with its reports, published evaluations and my links."""
    actor = current_actor()
    return render_template("reports/mine.html", **queries.mine(actor, local_today()))


@bp.get("/reports/labs/<int:lab_id>/<kind>")
@login_required
def report(lab_id: int, kind: str):
    """A report of a lab in scope, with 分享 · 下载 PDF · 下载 Excel."""
    lab = _lab(lab_id)
    params = _params(kind, request.args)
    report = queries.report_for_page(lab, kind, params, local_today())
    published = (services.published_evaluation(lab.id, params["month"])
                 if kind == "evaluation" else None)
    return render_template("reports/report.html", report=report, lab=lab, kind=kind,
                           comments=comments.page_context(current_actor(), published),
                           chart_svgs=firstpaint.chart_svgs(report), params=params,
                           query=request.args.to_dict(flat=False),
                           ttl_choices=services.TTL_CHOICES,
                           ts_choices=queries.ts_choices(lab) if kind == "dynamic" else [],
                           cmp_choices=report_section.choices(lab) if kind == "dynamic" else [],
                           months=queries.month_choices(local_today()),
                           period_kinds=periods.PERIOD_KINDS,
                           default_ttl=services.DEFAULT_TTL_DAYS)


@bp.get("/reports/labs/<int:lab_id>/<kind>.<fmt>")
@login_required
def report_file(lab_id: int, kind: str, fmt: str):
    """Download the report as PDF or Excel (the same numbers as the page)."""
    lab = _lab(lab_id)
    params = _params(kind, request.args)
    report = queries.report_for_page(lab, kind, params, local_today())
    return exports.download(report, fmt)


@bp.post("/reports/share")
@login_required
def share():
    """Create a share link for a report the actor may see; show it once with its QR code."""
    actor = current_actor()
    kind = request.form.get("kind", "")
    if kind not in REPORT_KINDS:
        raise UserError(f"报告类型无效：{kind}", field="kind")
    lab_id = request.form.get("lab_id", "")
    if not (lab_id.isascii() and lab_id.isdigit()) or len(lab_id) > 12:
        raise UserError("实验室参数无效", field="lab_id")
    lab = _lab(int(lab_id))
    created = services.share_report(actor, lab, kind, _params(kind, request.form),
                            request.form.get("ttl_days"), local_today())
    db.session.commit()
    session[_NEW_LINK_KEY] = {"id": created.link.id, "token": created.token}
    return redirect(url_for("reports.link_created", link_id=created.link.id))


@bp.get("/reports/links/<int:link_id>/new")
@login_required
def link_created(link_id: int):
    """Show a link just created (the only time its token is known) with its QR code."""
    held = session.pop(_NEW_LINK_KEY, None) or {}
    if held.get("id") != link_id:
        return redirect(url_for("reports.links"))
    link = services.managed_link(current_actor(), link_id)
    url = public_url(f"/r/{held['token']}")
    return render_template("reports/link_created.html", link=link, url=url, qr=_qr_svg(url))


@bp.get("/reports/links")
@login_required
def links():
    """我分享的链接: each with its report, expiry, views and a revoke button."""
    return render_template("reports/links.html", links=services.links_of(current_actor()),
                           now=utcnow())


@bp.post("/reports/links/<int:link_id>/revoke")
@login_required
def revoke(link_id: int):
    """Revoke a link: from now on it shows the revoked page and no data."""
    services.revoke_link(current_actor(), link_id)
    db.session.commit()
    return redirect(url_for("reports.links"))


def _qr_svg(url: str) -> str:
    buf = io.BytesIO()
    qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8).save(buf)
    return buf.getvalue().decode("utf-8")


# ---------------------------------------------------------------- the public shared page


def _shared(token: str):
    link = services.find_link(token)
    return link, services.report_of_link(link, local_today())


@bp.get("/r/<token>")
def shared(token: str):
    """The shared report: no login, exactly what the link grants, other labs anonymous."""
    link, report = _shared(token)
    services.count_view(link)
    db.session.commit()
    return render_template("reports/shared.html", report=report, link=link, token=token,
                           chart_svgs=firstpaint.chart_svgs(report),
                           inline_styles=firstpaint.inline_styles(),
                           share_image=public_url("/static/img/share-card.png")), 200, {
        "Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex, nofollow"}


@bp.get("/r/<token>.<fmt>")
def shared_file(token: str, fmt: str):
    """The shared report as PDF or Excel."""
    _link, report = _shared(token)
    return exports.download(report, fmt)


def link_error(exc: UserError) -> tuple[str, int]:
    """Render the Chinese page for an unknown, expired or revoked link (no data)."""
    return render_template("reports/link_error.html", message=exc.message,
                           status=exc.status), exc.status


@bp.errorhandler(UserError)
def _user_error(exc: UserError):
    db.session.rollback()
    if request.path.startswith("/r/") and not getattr(exc, "retry_after", None):
        return link_error(exc)  # the link itself is bad; a busy service is not the link's fault
    from qcwx.web.errors import error_response

    return error_response(exc)


# ---------------------------------------------------------------- command line


def _lab_by_code(code: str) -> Lab:
    from sqlalchemy import select

    lab = db.session.scalar(select(Lab).where(Lab.code == code))
    if lab is None:
        raise click.BadParameter(f"no lab with code {code!r}", param_hint="--lab")
    return lab


@bp.cli.command("share")
@click.option("--kind", type=click.Choice(sorted(REPORT_KINDS)), required=True)
@click.option("--lab", "lab_code", required=True, help="The lab's code (as in the admin pages).")
@click.option("--month", default=None, help="YYYY-MM (evaluation; default last month).")
@click.option("--days", type=int, default=None, help="Dynamic report of the last N days "
              "(default: this month, live).")
@click.option("--ttl-days", default=str(services.DEFAULT_TTL_DAYS), show_default=True,
              help="Life of the link in days; 0 = never (published evaluations only).")
def share_command(kind: str, lab_code: str, month: str | None, days: int | None,
                  ttl_days: str) -> None:
    """Create a share link of a lab's report and print its full URL."""
    lab = _lab_by_code(lab_code)
    today = local_today()
    try:
        if kind == "dynamic":
            args = {"period": "days", "days": str(days)} if days else {"period": "this_month"}
            params = {"ts_ids": None, "period": periods.parse_spec(args)}
        else:
            params = {"month": queries.parse_month(month, today)}
        created = services.share_report(None, lab, kind, params, ttl_days, today)
    except UserError as exc:
        raise click.ClickException(exc.message) from None
    try:
        url = public_url(created.path, shared=True)
    except ConfigError as exc:
        raise click.ClickException(f"{exc}: set QCWX_BASE_URL to the public address") from None
    db.session.commit()
    click.echo(url)


@bp.cli.command("publish")
@click.option("--month", default=None, help="YYYY-MM (default: last month).")
@click.option("--lab", "lab_codes", multiple=True, help="Only these labs' codes (default: all).")
def publish_command(month: str | None, lab_codes: tuple[str, ...]) -> None:
    """Freeze a finished month and publish every lab's evaluation report (idempotent)."""
    today = local_today()
    month = month or queries.previous_month(today)
    try:
        done, existing = services.publish_month(month, today, lab_codes=list(lab_codes),
                                                commit=db.session.commit)
    except UserError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{month}: {done} evaluation report(s) published, {existing} already were")


# Expert comments and the regional report live in their own modules on this blueprint.
from qcwx.reports import comment_views, regional_views  # noqa: E402,F401 - register routes
