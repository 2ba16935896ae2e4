"""Answers of the official account to what people send it (texts, follows, QR scans).

Kept apart from the view so the wording (Chinese, short enough for a phone screen and for
WeChat's 2048-byte text limit) and the decisions (who is bound, what today's QC looks like)
are plain functions of a parsed wechatpy message.
"""

from __future__ import annotations

import logging
from collections import Counter

from flask import current_app
from wechatpy.messages import BaseMessage, TextMessage

from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.iqc.queries import today_board
from qcwx.orgs.models import User
from qcwx.timeutil import local_today
from qcwx.wechat import services

logger = logging.getLogger(__name__)

MAX_LISTED = 5
WELCOME = "欢迎关注区域临床检验质控平台！在这里录入每日室内质控、接收失控提醒、查看室间比对结果。"


def help_text() -> str:
    """Return the list of keywords the account understands."""
    return ("可发送以下关键词：\n"
            "【今日质控】查看本实验室今天的质控情况\n"
            "【绑定】了解如何绑定平台账号\n"
            "【帮助】显示本说明\n"
            "也可点击下方菜单「录入质控」直接录入。")


def bind_text(user: User | None) -> str:
    """Explain how to bind (or to whom this WeChat is bound already)."""
    if user is not None:
        return (f"您的微信已绑定账号：{user.display_name}（{user.role_label}）。"
                "如需解绑，请在平台「微信绑定」页面操作或联系质控中心。")
    return ("您的微信尚未绑定平台账号。\n"
            "1. 请质控中心、科主任或质控主管为您生成绑定邀请码；\n"
            "2. 扫描邀请二维码，或打开以下链接输入邀请码完成绑定：\n"
            f"{services.bind_url()}")


def today_text(user: User | None) -> str:
    """Summarise today's QC of the user's scope: entered / in control / warning / rejected."""
    if user is None:
        return "您的微信尚未绑定平台账号，无法查看质控情况。\n发送【绑定】了解绑定方法。"
    tz = user.lab.timezone if user.lab is not None else current_app.config["TIMEZONE"]
    today = local_today(tz)
    board = today_board(user, today)
    if not board:
        return f"{today:%Y-%m-%d} 您的范围内暂无在用的检测系统。"
    counts = Counter(row.today_status for row in board)
    entered = len(board) - counts.get(None, 0)
    lines = [f"今日质控（{today:%Y-%m-%d}）",
             f"检测系统 {len(board)} 个，已录入 {entered} 个，未录入 {counts.get(None, 0)} 个",
             f"在控 {counts.get('accept', 0)} · 警告 {counts.get('warning', 0)} · "
             f"失控 {counts.get('reject', 0)}"]
    rejected = [row.test_system.title for row in board if row.today_status == "reject"]
    if rejected:
        lines.append("失控项目：" + "；".join(rejected[:MAX_LISTED])
                     + ("等" if len(rejected) > MAX_LISTED else ""))
        lines.append("请尽快在「失控处理」中填写纠正措施。")
    return "\n".join(lines)


def scan_text(code: str, openid: str) -> str:
    """Redeem the invite carried by a QR scene and say how it went."""
    try:
        # A savepoint: a refused code must not poison the request's transaction.
        with db.session.begin_nested():
            user = services.redeem_invite(code, openid)
    except UserError as exc:
        return f"绑定未成功：{exc.message}"
    return (f"绑定成功！您的微信已绑定账号：{user.display_name}（{user.role_label}）。\n"
            + help_text())


def reply_text(message: BaseMessage) -> str | None:
    """Return the text to answer ``message`` with, or None when no answer is due."""
    openid = message.source
    if message.type == "event":
        event = getattr(message, "event", "")
        if event == "subscribe":
            return WELCOME + "\n" + help_text()
        if event in ("subscribe_scan", "scan"):
            scene = (getattr(message, "scene_id", "") or "").strip()
            prefix = WELCOME + "\n" if event == "subscribe_scan" else ""
            return prefix + (scan_text(scene, openid) if scene else help_text())
        if event == "click":
            return _keyword(getattr(message, "key", "") or "", openid)
        return None  # unsubscribe, view, location...: WeChat expects no reply
    if isinstance(message, TextMessage):
        return _keyword(message.content or "", openid)
    return help_text()


def _keyword(text: str, openid: str) -> str:
    word = text.strip().upper()
    if word in ("今日质控", "TODAY_QC"):
        return today_text(services.user_for_openid(openid))
    if word in ("绑定", "BIND"):
        return bind_text(services.user_for_openid(openid))
    return help_text()
