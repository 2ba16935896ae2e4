"""Request bodies of the mini-program API, declared once (checks and ``openapi.json``).

Each body is a pydantic model (:mod:`qcwx.web.apischema`): :func:`body` validates the request
against it and a bad field becomes a 400 ``{error, field}`` with a Chinese message naming the
field, so a malformed body is never a 500 and the mini-program can put the message next to
the field. :mod:`miniprogram_api.openapi` generates the request schemas from these classes.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from flask import request
from pydantic import Field

from qcwx.errors import UserError
from qcwx.iqc.validation import RunValues
from qcwx.numbers import MAX_ID, ascii_int
from qcwx.web.apischema import (
    ApiModel,
    Id,
    PlausibleDate,
    RunNo,
    parse,
    text,
)
from qcwx.web.inputs import has_lone_surrogate

#: ``wx.login`` codes are 32 characters today; the bound leaves room without inviting junk.
MAX_CODE = 128
#: ``WechatInvite.code`` is ``String(32)``; label URLs/tokens fit in 512; template ids are
#: ``SubscribeConsent.template_id`` ``String(64)``.
MAX_INVITE = 32
MAX_PAYLOAD = 512
SubscribeAnswer = Literal["accept", "reject", "ban", "filter"]


class LoginRequest(ApiModel):
    """``POST /login``: the code of ``wx.login``."""

    code: text(MAX_CODE) = Field(title="登录凭证 code")


class BindRequest(ApiModel):
    """``POST /bind``: a fresh ``wx.login`` code and the invite code an administrator issued."""

    code: text(MAX_CODE) = Field(title="登录凭证 code")
    invite_code: text(MAX_INVITE) = Field(title="邀请码")


class ScanRequest(ApiModel):
    """``POST /scan``: what the camera read (a label URL or its bare token)."""

    payload: text(MAX_PAYLOAD) = Field(title="扫码内容")


class RunSubmission(RunValues):
    """``POST /runs``: one run's results per level; ``client_id`` makes a resend idempotent."""

    test_system_id: Id = Field(title="检测系统")
    client_id: text(64) = Field(
        title="记录编号", description="客户端生成的唯一编号；重发同一编号不会重复保存")
    run_date: PlausibleDate | None = Field(
        None, title="检测日期", description="默认今天（实验室当地）")
    run_no: RunNo | None = Field(None, title="批次号", description="当天第几批，默认 1")


class SubscriptionRequest(ApiModel):
    """``POST /subscriptions``: what ``wx.requestSubscribeMessage`` answered per template."""

    template_ids: list[text(64)] = Field(title="订阅的模板 ID 列表", min_length=1, max_length=20)
    results: dict[text(64), SubscribeAnswer] = Field(title="订阅结果", min_length=1,
                                                       max_length=20)
    type_messages: ClassVar[dict[str, str]] = {"template_ids": "请提供订阅的模板 ID 列表",
                                               "results": "请提供订阅结果"}


REQUEST_MODELS = (LoginRequest, BindRequest, ScanRequest, RunSubmission, SubscriptionRequest)


def json_object() -> dict:
    """Return the request's JSON object body (400 for anything else or a lone surrogate)."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise UserError("请求内容必须是 JSON 对象", field="body")
    if has_lone_surrogate(data):
        raise UserError("请求内容含有无效字符（孤立的 Unicode 代理码位）", field="body")
    return data


def body(model: type[ApiModel]):
    """Return the request's JSON object body validated as ``model`` (else 400 naming the field)."""
    return parse(model, json_object())


def int_arg(name: str, label: str, default: int, low: int, high: int) -> int:
    """Return an integer query argument within [low, high]: absent, or exactly one integer.

    As the document declares it (``type: integer``): ``?limit=``, ``?limit= 5`` and a
    repeated ``?limit=1&limit=2`` are refused rather than guessed at.
    """
    given = request.args.getlist(name)
    if not given:
        return default
    if len(given) > 1:
        raise UserError(f"{label}只能填写一个", field=name)
    raw = given[0]
    value = ascii_int(raw, -MAX_ID, MAX_ID) if raw == raw.strip() else None
    if value is None:
        raise UserError(f"{label}必须是整数", field=name)
    if not low <= value <= high:
        raise UserError(f"{label}必须在 {low}–{high} 之间", field=name)
    return value


def subscription_results(data: SubscriptionRequest) -> dict[str, str]:
    """Return ``results``, which must answer exactly the templates of ``template_ids``."""
    if set(data.results) != set(data.template_ids):
        raise UserError("订阅结果与模板 ID 列表不一致", field="results")
    return dict(data.results)
