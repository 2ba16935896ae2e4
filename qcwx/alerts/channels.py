"""Alert channels behind a small registry (Redash's ``register()`` pattern).

A channel turns one outbox row into messages: ``recipients(outbox)`` says who gets it (and at
which address), ``render(outbox, recipient)`` builds the API payload, ``send(rendered)`` calls
WeChat and returns its answer. Dispatch (:mod:`qcwx.alerts.delivery`) knows nothing about
WeChat; adding a channel (SMS, e-mail, WeCom) is one class decorated with :func:`register`.

Failures are raised as :class:`SendError` with ``permanent`` set from WeChat's errcode, so
dispatch decides between "retry later" and "give up on this recipient" without parsing
vendor messages. Who an alert concerns is read in :mod:`qcwx.alerts.recipients`.

Template message format (``wechat_template``, template id ``QCWX_WECHAT_TEMPLATE_ALERT``): the
classic keyword layout, chosen because its values may be free Chinese text of any length —
``first`` (title), ``keyword1`` 检测项目 (analyte, code, lab), ``keyword2`` 质控结果 (each level
with value and Z), ``keyword3`` 触发规则 (rule codes and names), ``keyword4`` 时间
(Asia/Shanghai), ``remark`` (what to do). Reminders and digests use the same keys with their
own wording. The mini-program subscribe message (``mp_subscribe``, template
``MP_TEMPLATE_ALERT``) uses the typed keys WeChat requires there: ``thing1`` 检测项目,
``phrase2`` 状态, ``thing3`` 触发规则, ``time4`` 时间, ``thing5`` 实验室 (thing ≤ 20 chars).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import redis
import requests
from flask import current_app
from wechatpy.exceptions import WeChatClientException

from qcwx.alerts.models import OutboxMessage
from qcwx.alerts.recipients import (
    NOTICE_KINDS,
    RUN_KINDS,
    audience,
    consenting_lab_users,
    lab_of,
    unused_consent,
)
from qcwx.errors import ExternalServiceError
from qcwx.qcstats import westgard
from qcwx.timeutil import to_local, utcnow
from qcwx.web.urls import public_url

log = logging.getLogger(__name__)

__all__ = ["Channel", "Recipient", "SendError", "all_channels", "get", "register"]

KIND_LABELS = {"run_warning": "质控警告", "run_reject": "质控失控",
               "missing_submission": "质控未提交提醒", "daily_digest": "质控日报",
               "expert_comment": "专家点评", "comment_reply": "点评回复",
               "region_report": "区域质控报告发布"}
DEFAULT_MP_TEMPLATE = "MP_QC_ALERT_TEMPLATE"
MP_ALERT_PAGE = "pages/run/run"

# WeChat errcodes after which retrying the same recipient cannot succeed.
PERMANENT_ERRCODES = {
    40003: "接收人 openid 无效",
    40037: "模板 ID 无效，请检查模板配置",
    43004: "接收人未关注公众号",
    43101: "接收人未订阅或订阅次数已用完",
    47001: "消息格式错误",
    47003: "模板参数不符合要求",
}
# What a send may raise besides our own errors: WeChat's answer, the network, the token store.
SEND_FAILURES = (WeChatClientException, requests.RequestException, redis.RedisError,
                 ExternalServiceError)
RETRY_ERRCODES = {
    -1: "微信系统繁忙",
    45009: "接口调用已达每日上限",
    45011: "接口调用过于频繁",
}


@dataclass(frozen=True)
class Recipient:
    """Who gets one message: the user (if any) and the channel's address (an openid)."""

    user_id: int | None
    address: str


class SendError(Exception):
    """A send failed; ``permanent`` says whether retrying this recipient is pointless."""

    def __init__(self, message: str, *, permanent: bool, errcode: int | None = None,
                 response: dict | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.errcode = errcode
        self.response = response


class Channel(ABC):
    """One way of delivering an outbox row; subclasses set ``name`` and the three methods."""

    name: ClassVar[str]
    label: ClassVar[str]

    @abstractmethod
    def recipients(self, outbox: OutboxMessage) -> list[Recipient]:
        """Return who receives ``outbox`` over this channel (possibly nobody)."""

    @abstractmethod
    def render(self, outbox: OutboxMessage, recipient: Recipient) -> dict:
        """Return the API payload of the message to ``recipient``."""

    @abstractmethod
    def send(self, rendered: dict) -> dict:
        """Send a rendered message and return the provider's answer; raise ``SendError``."""

    def after_sent(self, outbox: OutboxMessage, recipient: Recipient) -> None:  # noqa: B027
        """Record side effects of a successful send (default: none, hence not abstract)."""


_REGISTRY: dict[str, type[Channel]] = {}


def register(channel_cls: type[Channel]) -> type[Channel]:
    """Add a channel class to the registry (usable as a class decorator)."""
    _REGISTRY[channel_cls.name] = channel_cls
    return channel_cls


def get(name: str) -> Channel:
    """Return an instance of the channel registered as ``name``."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown alert channel {name!r}") from None


def all_channels() -> list[Channel]:
    """Return one instance of every registered channel, in registration order."""
    return [cls() for cls in _REGISTRY.values()]


def channel_label(name: str) -> str:
    """Return the Chinese name of a channel for pages."""
    cls = _REGISTRY.get(name)
    return cls.label if cls else name


# ---------------------------------------------------------------- shared helpers
def wechat_error(exc: Exception) -> SendError:
    """Translate a wechatpy / requests failure into a ``SendError`` with a Chinese message."""
    if isinstance(exc, WeChatClientException) and exc.errcode is not None:
        code = int(exc.errcode)
        answer = {"errcode": code, "errmsg": exc.errmsg}
        if code in PERMANENT_ERRCODES:
            return SendError(f"{PERMANENT_ERRCODES[code]}（{code}）", permanent=True,
                             errcode=code, response=answer)
        reason = RETRY_ERRCODES.get(code, "微信接口返回错误")
        return SendError(f"{reason}（{code}: {exc.errmsg}）", permanent=False, errcode=code,
                         response=answer)
    if isinstance(exc, (redis.RedisError, ExternalServiceError)):
        return SendError(f"微信令牌存储（Redis）不可用：{exc}"[:500], permanent=False)
    return SendError(f"无法连接微信服务器：{exc}"[:500], permanent=False)


def local_time_text(iso: str | None) -> str:
    """Return a stored UTC ISO time as ``YYYY-MM-DD HH:MM`` in Asia/Shanghai."""
    moment = datetime.fromisoformat(iso) if iso else utcnow()
    return to_local(moment).strftime("%Y-%m-%d %H:%M")


def _z_text(z: float | None) -> str:
    return "" if z is None else f"（Z={z:+.2f}）"


def values_text(payload: dict) -> str:
    """Return ``水平1 5.64（Z=+3.20）；水平2 …`` from a run alert's payload."""
    return "；".join(f"{v['level']} {v['value']}{_z_text(v.get('z'))}"
                    for v in payload.get("values", []))


def rules_text(payload: dict) -> str:
    """Return the fired rules with their Chinese names, e.g. ``1-3s 单值超出3倍标准差``."""
    names = []
    for code in payload.get("rules", []):
        info = westgard.RULE_INFO.get(code)
        names.append(f"{code} {info.name}" if info else code)
    return "；".join(names) or "—"


def run_link(outbox: OutboxMessage) -> str:
    """Return the deep link of a run alert: ``{BASE_URL}/runs/<run_id>``."""
    return public_url(f"/runs/{outbox.payload['run_id']}", shared=True)


def _home_link() -> str:
    return public_url("/", shared=True)


def _lab_name(outbox: OutboxMessage) -> str:
    lab = lab_of(outbox)
    return lab.full_name if lab is not None else outbox.payload.get("lab_name", "")


def _field(value: str) -> dict:
    return {"value": value}


def _template_data(outbox: OutboxMessage) -> tuple[dict, str]:
    """Return ``(data, url)`` of the official-account template message for ``outbox``."""
    p = outbox.payload
    when = local_time_text(p.get("at"))
    lab = _lab_name(outbox)
    if outbox.kind in RUN_KINDS:
        analyte = f"{p['analyte']}（{p['analyte_code']}，{p['unit']}）"
        remark = ("请暂停发出本批患者报告，查找原因并填写失控处理记录。" if p["status"] == "reject"
                  else "请复核质控结果与近期趋势后再决定是否发出报告。")
        data = {
            "first": _field(f"{lab}：{p['analyte']}质控{p['status_label']}"
                            f"（{p['run_date']} 第{p['run_no']}批）"),
            "keyword1": _field(analyte),
            "keyword2": _field(values_text(p)),
            "keyword3": _field(rules_text(p)),
            "keyword4": _field(when),
            "remark": _field(remark + "点击查看详情。"),
        }
        return data, run_link(outbox)
    if outbox.kind == "missing_submission":
        items = "、".join(m["analyte"] for m in p["missing"])
        data = {
            "first": _field(f"{lab}：今日（{p['date']}）仍有 {len(p['missing'])} 个项目未提交质控"),
            "keyword1": _field(items),
            "keyword2": _field("未提交"),
            "keyword3": _field(f"应在 {p['reminder_time']} 前完成室内质控"),
            "keyword4": _field(when),
            "remark": _field("请尽快完成质控并录入结果。"),
        }
        return data, _home_link()
    if outbox.kind == "daily_digest":
        lines = "；".join(f"{i['analyte']} 第{i['run_no']}批 {i['status_label']}（{i['rules']}）"
                         for i in p["items"])
        data = {
            "first": _field(f"{lab}：{p['date']} 质控日报"),
            "keyword1": _field(f"警告 {p['warnings']} 批，失控 {p['rejects']} 批"),
            "keyword2": _field(lines or "—"),
            "keyword3": _field("、".join(sorted({i['analyte'] for i in p["items"]})) or "—"),
            "keyword4": _field(when),
            "remark": _field("请在平台上查看详情并跟进失控处理。"),
        }
        return data, _home_link()
    if outbox.kind in NOTICE_KINDS:
        return {k: _field(v) for k, v in p["fields"].items()}, p["url"]
    raise ValueError(f"no template message for outbox kind {outbox.kind!r}")


# ---------------------------------------------------------------- channels
@register
class WechatTemplateChannel(Channel):
    """Official-account template message to each bound user (``User.wechat_openid``)."""

    name = "wechat_template"
    label = "公众号模板消息"

    def recipients(self, outbox: OutboxMessage) -> list[Recipient]:
        """Return the audience members who bound the official account, once each."""
        seen: dict[str, Recipient] = {}
        for user in audience(outbox):
            if user.wechat_openid and user.wechat_openid not in seen:
                seen[user.wechat_openid] = Recipient(user.id, user.wechat_openid)
        return list(seen.values())

    def render(self, outbox: OutboxMessage, recipient: Recipient) -> dict:
        """Return the template message (touser, template_id, url, data) to ``recipient``."""
        data, url = _template_data(outbox)
        return {"touser": recipient.address,
                "template_id": current_app.config["WECHAT_TEMPLATE_ALERT"],
                "url": url, "data": data}

    def send(self, rendered: dict) -> dict:
        """Send through the official account's shared-token client."""
        from qcwx.wechat.client import official_client

        try:
            return official_client().message.send_template(
                rendered["touser"], rendered["template_id"], rendered["data"],
                url=rendered.get("url"))
        except SEND_FAILURES as exc:
            raise wechat_error(exc) from exc


def mp_template_id() -> str:
    """Return the mini-program subscribe template of QC alerts (``MP_TEMPLATE_ALERT``)."""
    return current_app.config.get("MP_TEMPLATE_ALERT") or DEFAULT_MP_TEMPLATE


def _thing(text: str) -> dict:
    # WeChat rejects a "thing" value longer than 20 characters (47003).
    return {"value": text if len(text) <= 20 else text[:19] + "…"}


@register
class MpSubscribeChannel(Channel):
    """Mini-program subscribe message to lab users holding an unused consent (one per send)."""

    name = "mp_subscribe"
    label = "小程序订阅消息"

    def recipients(self, outbox: OutboxMessage) -> list[Recipient]:
        """Return the lab's users with a mini-program openid and an unused alert consent."""
        if outbox.kind not in RUN_KINDS:
            return []
        return [Recipient(uid, openid) for uid, openid
                in consenting_lab_users(outbox.lab_id, mp_template_id())]

    def render(self, outbox: OutboxMessage, recipient: Recipient) -> dict:
        """Return the subscribe message (typed keys) opening the run page of the mini-program."""
        p = outbox.payload
        return {
            "touser": recipient.address, "template_id": mp_template_id(),
            "page": f"{MP_ALERT_PAGE}?id={p['run_id']}",
            "data": {"thing1": _thing(f"{p['analyte']}（{p['analyte_code']}）"),
                     "phrase2": {"value": p["status_label"]},
                     "thing3": _thing("、".join(p.get("rules", [])) or "—"),
                     "time4": {"value": local_time_text(p.get("at"))},
                     "thing5": _thing(_lab_name(outbox))},
        }

    def send(self, rendered: dict) -> dict:
        """Send through the mini-program's shared-token client."""
        from qcwx.wechat.client import mp_client

        try:
            return mp_client().wxa.send_subscribe_message(
                rendered["touser"], rendered["template_id"], rendered["data"],
                page=rendered.get("page"))
        except SEND_FAILURES as exc:
            raise wechat_error(exc) from exc

    def after_sent(self, outbox: OutboxMessage, recipient: Recipient) -> None:
        """Consume one consent: WeChat allows one message per "accept"."""
        consent = unused_consent(recipient.user_id, mp_template_id())
        if consent is not None:
            consent.used_at = utcnow()
