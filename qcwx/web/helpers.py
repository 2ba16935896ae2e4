"""Jinja filters and globals every page uses (local time, number formatting, verdict colours)."""

from __future__ import annotations

import math
from datetime import datetime

from flask import Flask

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


def nav_items() -> list[dict]:
    """Return the tab-bar entries for the current user's role."""
    from flask import url_for
    from flask_login import current_user

    if not current_user.is_authenticated:
        return []
    items = [{"url": url_for("labels.scan"), "icon": "scan", "label": "扫码录入"},
             {"url": url_for("iqc.actions"), "icon": "flag", "label": "失控处理"}]
    if current_user.role != "technician":
        items.append({"url": url_for("labels.index"), "icon": "label", "label": "质控标签"})
    if current_user.role in ("admin", "center"):
        items.append({"url": url_for("admin.index"), "icon": "gear", "label": "管理"})
    return items


def install(app: Flask) -> None:
    """Register the filters and globals on ``app``."""
    app.context_processor(lambda: {"nav_items": nav_items()})
    app.add_template_filter(localtime)
    app.add_template_filter(fixed)
    app.add_template_global(STATUS_CLASS, "STATUS_CLASS")
