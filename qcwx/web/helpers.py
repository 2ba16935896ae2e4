"""Jinja filters and globals every page uses (local time, number formatting, verdict colours)."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from flask import Flask
from markupsafe import Markup

from qcwx.iqc.models import STATUS_LABEL
from qcwx.timeutil import to_local

STATUS_CLASS = {"accept": "ok", "warning": "warn", "reject": "bad", "pending": "muted"}


def localtime(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format a stored UTC datetime in Asia/Shanghai."""
    local = to_local(value)
    return local.strftime(fmt) if local else "—"


def fixed(value: float | None, decimals: int = 2) -> str:
    """Format a number with the analyte's decimals; ``—`` for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{decimals}f}"


def isotime(value: str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format an ISO UTC timestamp (as stored in a report document) in Asia/Shanghai."""
    if not value:
        return "—"
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return "—"
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return localtime(parsed, fmt)


def chart_json(options: dict) -> Markup:
    """Return chart options as JSON that is inert inside ``<script type="application/json">``."""
    from qcwx.charts.render import dict_script_options

    # Safe: "<", ">" and "&" are \u escapes, so no text can close the script element.
    return Markup(dict_script_options(options))  # noqa: S704


def nav_items() -> list[dict]:
    """Return the tab-bar entries for the current user's role (at most three besides home).

    Lab roles get capture first; the centre gets administration. Less frequent pages
    (labels, WeChat invites) are tiles on the home page instead of tabs.
    """
    from flask import url_for
    from flask_login import current_user

    if not current_user.is_authenticated:
        return []
    items = []
    if current_user.role not in ("admin", "center", "expert"):
        items.append({"url": url_for("labels.scan"), "icon": "scan", "label": "扫码录入"})
    items.append({"url": url_for("iqc.actions"), "icon": "flag", "label": "失控处理"})
    items.append({"url": url_for("peer.index"), "icon": "compare", "label": "室间比对"})
    if current_user.role in ("admin", "center"):
        items.append({"url": url_for("admin.index"), "icon": "gear", "label": "管理"})
    return items


def home_tiles() -> list[dict]:
    """Return the shortcut tiles of the home page for the current role."""
    from flask import url_for
    from flask_login import current_user

    role = current_user.role
    tiles = [{"url": url_for("reports.mine"), "icon": "list", "label": "我的报告"}]
    if role in ("admin", "center"):
        tiles.insert(0, {"url": url_for("dashboard.index"), "icon": "compare", "label": "质控总览"})
        tiles += [
            {"url": url_for("admin.index"), "icon": "hospital", "label": "机构与用户"},
            {"url": url_for("testsystem.index_view"), "icon": "flask", "label": "检测系统"},
            {"url": url_for("import_test_systems.index"), "icon": "upload", "label": "批量导入"},
            {"url": url_for("analyte.index_view"), "icon": "list", "label": "项目与质量规范"},
        ]
    if role in ("admin", "center"):
        tiles.append({"url": url_for("ingest.keys"), "icon": "gear", "label": "接口密钥"})
        tiles.append({"url": url_for("alerts.failed"), "icon": "flag", "label": "推送失败"})
        tiles.append({"url": url_for("insights.shifts"), "icon": "compare", "label": "偏移溯源"})
        tiles.append({"url": url_for("opendata.index"), "icon": "upload", "label": "开放数据"})
    if role in ("center", "admin", "supervisor", "director"):
        tiles.append({"url": url_for("lots.index"), "icon": "flask", "label": "统一批号"})
    if role in ("technician", "supervisor", "director"):
        tiles.append({"url": url_for("ingest.upload"), "icon": "upload", "label": "文件导入"})
    if role == "expert":  # read-only: reports and the centre's comparison pages
        tiles.insert(0, {"url": url_for("dashboard.index"), "icon": "compare", "label": "质控总览"})
        tiles.append({"url": url_for("peer.centre"), "icon": "compare", "label": "全区比对"})
        return tiles
    tiles.append({"url": url_for("ingest.mappings"), "icon": "list", "label": "项目映射"})
    tiles.append({"url": url_for("analytics.sigma_lab"), "icon": "compare", "label": "质量分析"})
    if role != "technician":
        tiles.append({"url": url_for("labels.index"), "icon": "label", "label": "质控标签"})
        tiles.append({"url": url_for("wechat.invites"), "icon": "wechat", "label": "微信绑定"})
    return tiles


def install(app: Flask) -> None:
    """Register the filters and globals on ``app``."""
    app.context_processor(lambda: {"nav_items": nav_items(), "home_tiles": home_tiles})
    app.add_template_filter(localtime)
    app.add_template_filter(fixed)
    app.add_template_filter(isotime)
    app.add_template_filter(chart_json)
    app.add_template_global(STATUS_CLASS, "STATUS_CLASS")
    app.add_template_global(STATUS_LABEL, "STATUS_LABEL")
