"""Input validation of the mini-program API: Chinese messages that name the field.

Each helper returns the clean value or raises ``UserError`` (400 with ``{error, field}``), so
a malformed body is never a 500 and the mini-program can put the message next to the field.
"""

from __future__ import annotations

from datetime import date

from flask import request

from qcwx.errors import UserError
from qcwx.iqc.validation import check_plausible_date
from qcwx.numbers import MAX_ID, ascii_int
from qcwx.web.inputs import has_lone_surrogate

MAX_TEXT = 512


def body() -> dict:
    """Return the JSON object body of the request."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise UserError("请求内容必须是 JSON 对象", field="body")
    if has_lone_surrogate(data):
        raise UserError("请求内容含有无效字符（孤立的 Unicode 代理码位）", field="body")
    return data


def text(data: dict, name: str, label: str, *, required: bool = True) -> str | None:
    """Return a trimmed string field (None when optional and absent)."""
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise UserError(f"请填写{label}", field=name)
        return None
    if not isinstance(value, str):
        raise UserError(f"{label}必须是字符串", field=name)
    if len(value) > MAX_TEXT:
        raise UserError(f"{label}过长", field=name)
    return value.strip()


def int_arg(name: str, label: str, default: int, low: int, high: int) -> int:
    """Return an integer query argument within [low, high]."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    value = ascii_int(raw, -MAX_ID, MAX_ID)
    if value is None:
        raise UserError(f"{label}必须是整数", field=name)
    if not low <= value <= high:
        raise UserError(f"{label}必须在 {low}–{high} 之间", field=name)
    return value


def int_field(data: dict, name: str, label: str) -> int:
    """Return a required integer field (numbers as strings accepted)."""
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserError(f"请填写{label}", field=name)
    number = ascii_int(value, 1, MAX_ID)
    if number is None:
        raise UserError(f"{label}必须是正整数", field=name)
    return number


def date_field(data: dict, name: str, default: date) -> date:
    """Return an ISO date field, or ``default`` when absent."""
    raw = data.get(name)
    if raw in (None, ""):
        return default
    if not isinstance(raw, str):
        raise UserError("日期格式无效，应为 YYYY-MM-DD", field=name)
    try:
        day = date.fromisoformat(raw.strip())
    except ValueError:
        raise UserError(f"日期“{raw}”格式无效，应为 YYYY-MM-DD", field=name) from None
    return check_plausible_date(day, name)


def level_values(data: dict) -> dict[str, str | None]:
    """Return ``values`` as {level key: value text}; numbers are taken as typed text."""
    values = data.get("values")
    if not isinstance(values, dict) or not values:
        raise UserError("请至少填写一个水平的结果", field="values")
    return {str(k): (v if v is None or isinstance(v, str) else str(v)) for k, v in values.items()}


def subscription_results(data: dict) -> dict[str, str]:
    """Return ``results`` of ``wx.requestSubscribeMessage``, checked against ``template_ids``."""
    template_ids = data.get("template_ids")
    if (not isinstance(template_ids, list) or not template_ids
            or not all(isinstance(t, str) and t for t in template_ids)):
        raise UserError("请提供订阅的模板 ID 列表", field="template_ids")
    results = data.get("results")
    if not isinstance(results, dict) or not results:
        raise UserError("请提供订阅结果", field="results")
    if set(results) != set(template_ids):
        raise UserError("订阅结果与模板 ID 列表不一致", field="results")
    return results
