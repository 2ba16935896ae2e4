"""The centre's dashboard (总览) and the lists behind its numbers; thin views over queries."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import login_required

from qcwx.charts import render as render_chart
from qcwx.charts import trend as trend_chart
from qcwx.dashboard import queries
from qcwx.errors import Forbidden
from qcwx.orgs.scopes import CENTRE_READERS
from qcwx.peer import queries as peer_queries
from qcwx.peer.filters import month_period
from qcwx.peer.paging import choice_arg, page_number, paginate
from qcwx.peer.views import _int_arg
from qcwx.timeutil import local_today
from qcwx.web.forms import current_actor

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

#: Sort orders of each list: key → (Chinese label, sort key, reverse).
TODAY_SORTS = {"last_run": "最后上报早的在前", "lab": "按实验室"}
MONTH_SORTS = {"submission": "填报率低的在前", "in_control": "在控率低的在前", "lab": "按实验室"}
RECORD_SORTS = {"age": "时间最久的在前", "lab": "按实验室"}
FLAG_SORTS = {"severity": "偏离最大的在前", "lab": "按实验室", "analyte": "按项目"}


def _context():
    """Return the actor, its region and this month, refusing roles other than the centre's."""
    actor = current_actor()
    if actor.role not in CENTRE_READERS:  # the read-only expert too
        raise Forbidden("只有区域质控中心可以查看总览")
    region_id = peer_queries.region_id_for(actor, _int_arg(request.args, "region", "区域"))
    today = local_today()
    return actor, region_id, today, month_period(today.strftime("%Y-%m"), today)


def _low_first(value: float | None) -> float:
    return value if value is not None else -1.0


@bp.get("/")
@login_required
def index():
    """Today and this month at a glance; every number links to its list."""
    actor, region_id, today, period = _context()
    board = queries.dashboard(actor, region_id, period, today)
    series = queries.trend(actor, today)
    chart = render_chart(trend_chart(
        series["months"], {"填报率 %": series["submission"], "在控率 %": series["in_control"]},
        "dash-trend", "近 12 个月填报率与在控率", bands=[(90, "90%"), (95, "95%")], decimals=1))
    return render_template("dashboard/index.html", board=board, series=series, chart=chart,
                           buckets=queries.AGE_BUCKETS, grades=queries.GRADES, is_centre=True)


@bp.get("/today")
@login_required
def today_list():
    """Labs that have not submitted today (by name for the centre), with their last run."""
    actor, _, today, _ = _context()
    sort = choice_arg(request.args, "sort", TODAY_SORTS, "last_run", "排序方式")
    show = choice_arg(request.args, "show", ("missing", "all"), "missing", "显示范围")
    days = queries.lab_days(actor, today)
    rows = [d for d in days if d.missing] if show == "missing" else days
    if sort == "last_run":
        rows.sort(key=lambda d: (d.last_run is not None, d.last_run or today, d.lab.code))
    else:
        rows.sort(key=lambda d: d.lab.code)
    return render_template("dashboard/today.html", page=paginate(rows, page_number(request.args)),
                           sort=sort, SORTS=TODAY_SORTS, show=show, today=today,
                           total=len(days), is_centre=True)


@bp.get("/month")
@login_required
def month_list():
    """Each lab's §7 submission and in-control rates this month."""
    actor, _, today, period = _context()
    sort = choice_arg(request.args, "sort", MONTH_SORTS, "submission", "排序方式")
    rows = queries.lab_months(actor, period.month, today)
    if sort == "submission":
        rows.sort(key=lambda m: (_low_first(m.submission_pct), m.lab.code))
    elif sort == "in_control":
        rows.sort(key=lambda m: (_low_first(m.in_control_pct), m.lab.code))
    return render_template("dashboard/month.html", page=paginate(rows, page_number(request.args)),
                           sort=sort, SORTS=MONTH_SORTS, period=period, is_centre=True,
                           region_pct=queries.mean(m.submission_pct for m in rows))


@bp.get("/records")
@login_required
def records():
    """Open and unsigned out-of-control records, oldest first, with their age."""
    actor, _, _, _ = _context()
    sort = choice_arg(request.args, "sort", RECORD_SORTS, "age", "排序方式")
    bucket = choice_arg(request.args, "age", [k for k, *_ in queries.AGE_BUCKETS] + ["all"],
                        "all", "时长")
    rows = queries.open_records(actor)
    if bucket != "all":
        rows = [r for r in rows if r.bucket == bucket]
    if sort == "lab":
        rows.sort(key=lambda r: (r.action.run.test_system.lab.code, -r.age_days))
    return render_template("dashboard/records.html", page=paginate(rows, page_number(request.args)),
                           sort=sort, SORTS=RECORD_SORTS, bucket=bucket,
                           buckets=queries.AGE_BUCKETS, is_centre=True)


@bp.get("/peer")
@login_required
def peer_flags():
    """Labs × analytes × levels with an unacceptable SDI (|SDI| ≥ 2) or CVR (> 2) this month."""
    actor, region_id, _, period = _context()
    sort = choice_arg(request.args, "sort", FLAG_SORTS, "severity", "排序方式")
    flags, _ = queries.peer_flags(actor, region_id, period)
    key = {"severity": lambda f: (-f.severity, f.lab.code),
           "lab": lambda f: (f.lab.code, f.analyte, f.level),
           "analyte": lambda f: (f.analyte, f.lab.code, f.level)}[sort]
    flags.sort(key=key)
    return render_template("dashboard/peer.html", page=paginate(flags, page_number(request.args)),
                           sort=sort, SORTS=FLAG_SORTS, period=period, is_centre=True,
                           labs=len({f.lab.id for f in flags}))
