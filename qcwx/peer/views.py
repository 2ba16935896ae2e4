"""Peer-comparison pages: a lab's comparison, the QC-lot chart page, the centre's views.

Views parse arguments (``qcwx.peer.filters``), check access through ``qcwx.orgs.scopes``
(via ``queries``), call one query or service, commit after a write and render. Charts come
from :mod:`qcwx.charts` only.
"""

from __future__ import annotations

import math
from urllib.parse import urlencode

import click
from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_login import login_required

from qcwx import charts
from qcwx.errors import Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.orgs import scopes
from qcwx.peer import queries, services
from qcwx.peer.filters import (
    CALENDAR_KINDS,
    DIMENSIONS,
    PERIOD_KINDS,
    calendar_options,
    int_arg,
    parse_filters,
    parse_period,
)
from qcwx.peer.models import GROUP_LEVEL_LABELS
from qcwx.peer.paging import choice_arg, page_number, paginate
from qcwx.peer.queries import centre as centre_q
from qcwx.peer.queries import exceptions as exception_report
from qcwx.peer.queries import labs as labs_q
from qcwx.peer.queries import lot as lot_q
from qcwx.peer.queries import lot_table
from qcwx.peer.queries.members import chart_rows
from qcwx.qcstats.peer import MIN_LABS
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor

bp = Blueprint("peer", __name__, url_prefix="/peer", cli_group="peer")
CENTRE_ROLES = scopes.CENTRE_READERS  # the expert reads the centre pages too
MATRIX_FILTERS = ("hospital_level", "instrument_maker", "reagent_maker", "method")


def _int_arg(args, name: str, label: str) -> int | None:
    """Return :func:`qcwx.peer.filters.int_arg`, refusing non-ASCII or overlong digits first.

    ``"²"`` passes ``str.isdigit`` but not ``int()``; thousands of digits exceed ``int()``'s
    limit: both are a 400 naming the field, never a 500.
    """
    text = str(args.get(name) or "").strip()
    if text and not (text.isascii() and len(text) <= 9):
        raise UserError(f"{label}参数无效：{text[:20]}", field=name)
    return int_arg(args, name, label)


def _require_centre(actor) -> None:
    if actor.role not in CENTRE_ROLES:
        raise Forbidden("只有区域质控中心可以查看全区比对")


# ------------------------------------------------------------------ template helpers


@bp.app_template_filter("peer_signed")
def peer_signed(value, decimals: int = 2, suffix: str = "") -> str:
    """Format a number with its sign (SDI, bias); ``—`` when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:+.{decimals}f}{suffix}"


@bp.app_template_global("peer_url")
def peer_url(endpoint: str, base: dict | None = None, **changes) -> str:
    """Return ``endpoint``'s URL with the current query arguments, some changed or removed."""
    args = {k: request.args.getlist(k) for k in request.args} if base is None else dict(base)
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    query = urlencode([(k, v) for k, vals in args.items()
                       for v in (vals if isinstance(vals, list) else [vals])])
    view_args = (request.view_args or {}) if endpoint == request.endpoint else {}
    return url_for(endpoint, **view_args) + (f"?{query}" if query else "")


def _common(region_id: int) -> dict:
    return {"PERIOD_KINDS": PERIOD_KINDS, "DIMENSIONS": DIMENSIONS,
            "LEVEL_LABELS": GROUP_LEVEL_LABELS, "UNPUBLISHED": queries.UNPUBLISHED,
            "region_id": region_id, "is_centre": current_actor().role in CENTRE_ROLES,
            "can_write": scopes.can_write(current_actor()),
            "regions": (scopes.regions_in_scope(current_actor())
                        if current_actor().role in CENTRE_ROLES else []),
            "today": local_today(), "CALENDAR_KINDS": CALENDAR_KINDS,
            "month_options": [key for key, _ in calendar_options("month", local_today())],
            "period_options": lambda kind: calendar_options(kind, local_today())}


# ------------------------------------------------------------------ pages


@bp.route("/")
@login_required
def index():
    """Send each role to its comparison home: own lab, hospital list or the centre matrix."""
    actor = current_actor()
    if actor.role in CENTRE_ROLES:
        return redirect(url_for("peer.centre"))
    labs = queries.labs_in_scope(actor)
    if len(labs) == 1:
        return redirect(url_for("peer.lab", lab_id=labs[0].id))
    return render_template("peer/labs.html", labs=labs, **_common(queries.region_id_for(actor)))


@bp.route("/labs/<int:lab_id>")
@login_required
def lab(lab_id: int):
    """A lab's comparison: each analyte × level against its peer group for the period."""
    actor = current_actor()
    today = local_today()
    period = parse_period(request.args, today)
    page = labs_q.lab_page(actor, lab_id, period, today)
    sparks = {}
    for block in page.blocks:
        for row in block.rows:
            if any(v is not None for v in row.sparkline):
                sparks[(row.ts_id, row.qc_level_id)] = charts.render(charts.sparkline(
                    row.sparkline, chart_id=f"spark-{row.ts_id}-{row.qc_level_id}"))
    return render_template("peer/lab.html", page=page, period=period, sparks=sparks,
                           snapshot=page.snapshot, **_common(page.lab.hospital.region_id))


def _lot_args(actor, region_id: int):
    args = request.args
    grouping = _int_arg(args, "grouping", "分组方案")
    if grouping is not None:
        filters = parse_filters(lot_q.load_grouping(region_id, grouping).filters)
    else:
        filters = parse_filters(args)
    own_ts = queries.first_system(actor) if actor.role not in CENTRE_ROLES else None
    level, analyte = lot_q.load_level(
        region_id, _int_arg(args, "level", "质控水平"), _int_arg(args, "analyte", "检验项目"),
        _int_arg(args, "lot", "质控品批号"), own_ts)
    return filters, level, analyte


@bp.route("/lot")
@login_required
def lot():
    """The QC-lot comparison chart page (某批号质控品的用户室间比对图) with stackable filters."""
    actor = current_actor()
    today = local_today()
    region_id = queries.region_id_for(actor, _int_arg(request.args, "region", "区域"))
    period = parse_period(request.args, today)
    filters, level, analyte = _lot_args(actor, region_id)
    highlight = _int_arg(request.args, "lab", "实验室")
    if highlight is not None and not scopes.can_access_lab(actor, highlight):
        raise NotFound()
    sort = choice_arg(request.args, "sort", lot_table.MEMBER_SORTS, "mean", "排序方式")
    view = lot_q.lot_view(actor, region_id, level, analyte, period, filters, highlight)
    chart_html, trend_html = _lot_charts(actor, region_id, view, today)
    return render_template(
        "peer/lot.html", view=view, period=period, charts=chart_html, trends=trend_html,
        choices=lot_q.lot_choices(region_id), groupings=lot_q.saved_groupings(region_id),
        highlight=highlight, sort=sort, SORTS=lot_table.MEMBER_SORTS,
        axis=lot_table.axis_labels(view.members),
        members=lot_table.sort_members(view.members, sort), **_common(region_id))


def _lot_charts(actor, region_id: int, view: lot_q.LotView, today):
    """Build the lot page's charts (only for a publishable group)."""
    if view.chosen is None or not view.members or view.g_sd is None or not view.g_sd > 0:
        return [], []
    title = f"{view.analyte.name} {view.level.name}"
    dec = view.analyte.decimals
    axis = lot_table.axis_labels(view.members)
    members = [{**row, "label": axis[m.ts_id]}
               for row, m in zip(chart_rows(view.members), view.members, strict=True)]
    out = [("各实验室均值", charts.render(charts.lab_comparison(
               members, view.g_mean, view.g_sd, chart_id="pe-lab-comparison",
               title=f"{title} 实验室均值比较", unit=view.unit, decimals=dec))),
           ("SDI–CVR", charts.render(charts.sdi_cvr(members, chart_id="pe-sdi-cvr",
                                                     title=f"{title} SDI–CVR"))),
           ("均值分布", charts.render(charts.histogram(
               [m.mean for m in view.members], 8, chart_id="pe-histogram",
               title=f"{title} 实验室均值分布",
               highlight_value=next((m.mean for m in view.members if m.highlight), None),
               decimals=dec, unit=view.unit)))]
    if view.tea_pct:
        out.append(("方法决定图", charts.render(charts.bias_cv(
            members, view.tea_pct, chart_id="pe-bias-cv", title=f"{title} 方法决定图"))))
    trends = []
    own = next((m for m in view.members if m.highlight), None)
    if own is not None:
        months, series = lot_q.trend_series(region_id, own.ts_id, view.level.id, today)
        labels = [m[2:] for m in months]
        if any(v is not None for v in series["SDI"]):
            trends.append(("近12个月 SDI", charts.render(charts.trend(
                labels, {"SDI": series["SDI"]}, chart_id="pe-trend-sdi",
                title=f"{own.code} SDI 月度趋势", bands=charts.SDI_BANDS))))
            trends.append(("近12个月 CVR", charts.render(charts.trend(
                labels, {"CVR": series["CVR"]}, chart_id="pe-trend-cvr",
                title=f"{own.code} CVR 月度趋势", bands=charts.CVR_BANDS))))
    return out, trends


@bp.route("/lot/size")
@login_required
def lot_size():
    """Return the group size of a filter stack as JSON (the filter panel's live count)."""
    actor = current_actor()
    region_id = queries.region_id_for(actor, _int_arg(request.args, "region", "区域"))
    period = parse_period(request.args, local_today())
    filters, level, analyte = _lot_args(actor, region_id)
    highlight = _int_arg(request.args, "lab", "实验室")
    if highlight is not None and not scopes.can_access_lab(actor, highlight):
        raise NotFound()
    first = lot_q.lot_size(region_id, level, analyte, period, filters, actor=actor,
                           highlight_lab=highlight)
    # Below the centre, a group of fewer than 5 labs shows no more than its lab count.
    shown = actor.role in CENTRE_ROLES or first.n_labs >= MIN_LABS
    return jsonify({"level": first.level, "label": first.label, "labs": first.n_labs,
                    "systems": first.n_systems if shown else None,
                    "results": first.n_results if shown else None,
                    "publishable": first.publishable})


@bp.route("/groupings", methods=["POST"])
@login_required
def save_grouping():
    """Save the lot page's current filters as a named grouping (centre only)."""
    actor = current_actor()
    region_id = queries.region_id_for(actor, _int_arg(request.form, "region", "区域"))
    grouping = services.save_grouping(actor, region_id, request.form.get("name", ""),
                                      parse_filters(request.form))
    db.session.commit()
    flash(f"已保存分组方案“{grouping.name}”")
    return redirect(_back_to_lot(grouping_id=grouping.id))


@bp.route("/groupings/<int:grouping_id>/delete", methods=["POST"])
@login_required
def delete_grouping(grouping_id: int):
    """Delete a saved grouping (centre only)."""
    actor = current_actor()
    region_id = queries.region_id_for(actor, _int_arg(request.form, "region", "区域"))
    services.delete_grouping(actor, region_id, grouping_id)
    db.session.commit()
    flash("已删除分组方案")
    return redirect(_back_to_lot())


def _back_to_lot(grouping_id: int | None = None) -> str:
    keep = {k: request.form.get(k) for k in ("lot", "level", "analyte", "period", "month",
                                             "region") if request.form.get(k)}
    if grouping_id is not None:
        keep["grouping"] = str(grouping_id)
    return url_for("peer.lot", **keep)


# ------------------------------------------------------------------ the centre


def _centre_args(actor):
    region_id = queries.region_id_for(actor, _int_arg(request.args, "region", "区域"))
    period = parse_period(request.args, local_today())
    lot_id = _int_arg(request.args, "lot", "质控品批号")
    choices = lot_q.lot_choices(region_id)
    if lot_id is not None and not any(c["lot"].id == lot_id for c in choices):
        raise NotFound("本区域没有使用该批号的实验室", field="lot")
    return region_id, period, lot_id, choices


@bp.route("/centre")
@login_required
def centre():
    """The centre's labs × analytes matrix of grades / SDI / CVR, with row filters."""
    actor = current_actor()
    _require_centre(actor)
    region_id, period, lot_id, choices = _centre_args(actor)
    metric = request.args.get("metric") or "grade"
    if metric not in ("grade", "sdi", "cvr"):
        raise UserError(f"显示指标无效：{metric}", field="metric")
    level_index = _int_arg(request.args, "level_index", "水平序号")
    sort = centre_q.check_matrix_sort(request.args.get("sort") or "rank")
    number = page_number(request.args)
    row_filters = {k: v for k, v in parse_filters(request.args).items() if k in MATRIX_FILTERS}
    rows, analytes, snap = centre_q.matrix(region_id, period, lot_id=lot_id,
                                          level_index=level_index, row_filters=row_filters)
    page = paginate(centre_q.sort_matrix(rows, sort, metric), number)
    facets = centre_q.facet_values(region_id, MATRIX_FILTERS)
    return render_template("peer/centre.html", page=page, analytes=analytes, snap=snap,
                           sort=sort, SORTS=centre_q.sort_labels(sort, analytes),
                           period=period, metric=metric, lot_id=lot_id, choices=choices,
                           level_index=level_index, row_filters=row_filters, facets=facets,
                           snapshots=queries.snapshots(region_id), snapshot=snap,
                           previous_month=services.previous_month(local_today()),
                           **_common(region_id))


@bp.route("/centre/nccl")
@login_required
def nccl():
    """NCCL-style pass rates per analyte × level (allowable CV, TEa/3, TEa/4, bias)."""
    actor = current_actor()
    _require_centre(actor)
    region_id, period, lot_id, choices = _centre_args(actor)
    sort = choice_arg(request.args, "sort", centre_q.NCCL_SORTS, "analyte", "排序方式")
    number = page_number(request.args)
    rows = centre_q.sort_nccl(centre_q.nccl_table(region_id, period, lot_id), sort)
    return render_template("peer/nccl.html", page=paginate(rows, number), sort=sort,
                           SORTS=centre_q.NCCL_SORTS, period=period, lot_id=lot_id,
                           choices=choices, **_common(region_id))


@bp.route("/centre/exceptions")
@login_required
def exceptions():
    """Exception report: unknown units, unit mismatches, > 5 SD labs, too few results."""
    actor = current_actor()
    _require_centre(actor)
    region_id, period, _, _ = _centre_args(actor)
    args = request.args
    min_n = _int_arg(args, "min_n", "最少结果数") or 10
    report = exception_report.report_page(
        region_id, period, min_n=min_n, kind=args.get("kind") or None,
        sort=args.get("sort") or "lab", page=page_number(args))
    return render_template("peer/exceptions.html", report=report, period=period, min_n=min_n,
                           KIND_TITLES=exception_report.KIND_TITLES,
                           KIND_SHORT=exception_report.KIND_SHORT,
                           SORTS=exception_report.SORTS,
                           MIN_DAYS=exception_report.FEW_RESULTS_MIN_DAYS, **_common(region_id))


@bp.route("/centre/freeze", methods=["POST"])
@login_required
def freeze():
    """Freeze a finished month for the centre's region (never recomputes a frozen one)."""
    actor = current_actor()
    _require_centre(actor)
    region_id = queries.region_id_for(actor, _int_arg(request.form, "region", "区域"))
    month = (request.form.get("month") or "").strip()
    result = services.freeze_month(region_id, month, local_today(), actor)[0]
    db.session.commit()
    flash(f"已冻结 {month}：{result.rows} 条检测系统统计")
    return redirect(url_for("peer.centre", period="month", month=month))


# ------------------------------------------------------------------ CLI


@bp.cli.command("rebuild")
@click.option("--region-id", type=int, default=None, help="Only this region.")
def rebuild_command(region_id: int | None) -> None:
    """Rebuild the peer moments cache (after a bulk import such as seed-demo)."""
    result = services.rebuild_cache(region_id)
    db.session.commit()
    click.echo(f"peer cache: {result.systems} systems, {result.days_written} days written")


@bp.cli.command("freeze")
@click.option("--month", required=True, help="YYYY-MM, a finished month.")
@click.option("--region-id", type=int, default=None, help="Only this region (default: all).")
def freeze_command(month: str, region_id: int | None) -> None:
    """Freeze a finished month's peer statistics (regions already frozen are kept)."""
    try:
        results = services.freeze_month(region_id, month, local_today())
    except UserError as exc:
        raise click.ClickException(exc.message) from exc
    db.session.commit()
    for r in results:
        click.echo(f"region {r.region_id} {r.month}: "
                   f"{'frozen, ' + str(r.rows) + ' rows' if r.created else 'already frozen'}")
