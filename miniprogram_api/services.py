"""Mini-program identity: turn a ``wx.login`` code into an openid, and bind it via an invite.

``code2session`` goes through the shared-token client of :mod:`qcwx.wechat.client` (the
local fake in development). Binding reuses the invite codes of :mod:`qcwx.wechat.services`
(same codes, same normalisation, same refusals); it differs only in the column it fills:
``User.mp_openid`` — a mini-program has its own appid, so the same person has another openid
there. Services flush, never commit.
"""

from __future__ import annotations

import logging

import redis
import requests
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from wechatpy.exceptions import WeChatClientException

from qcwx.catalog.models import TestSystem
from qcwx.errors import Conflict, ExternalServiceError, UserError
from qcwx.extensions import db
from qcwx.labels import services as labels
from qcwx.orgs.models import User
from qcwx.timeutil import utcnow
from qcwx.wechat.client import mp_client
from qcwx.wechat.models import WechatInvite
from qcwx.wechat.services import normalise_code

log = logging.getLogger(__name__)

# code2session errcodes that mean "this code is no good" (user error, not an outage).
BAD_CODE_ERRCODES = {40029, 40163, 41008, 45011}


def openid_from_code(code: str) -> str:
    """Return the mini-program openid proved by a ``wx.login`` code (400 if the code is bad)."""
    try:
        result = mp_client().wxa.code_to_session(code)
    except WeChatClientException as exc:
        if exc.errcode is not None and int(exc.errcode) in BAD_CODE_ERRCODES:
            raise UserError("登录凭证无效或已使用，请重新登录", field="code") from None
        log.warning("code2session failed: %s %s", exc.errcode, exc.errmsg)
        raise UserError("微信服务暂时不可用，请稍后再试", status=503) from None
    except (requests.RequestException, redis.RedisError, ExternalServiceError) as exc:
        # WeChat unreachable, or the shared token store (Redis) down: an outage, not a 500.
        log.warning("code2session unavailable: %s", exc)
        raise UserError("微信服务暂时不可用，请稍后再试", status=503) from None
    openid = result.get("openid") if isinstance(result, dict) else None
    if not openid:
        raise UserError("微信服务暂时不可用，请稍后再试", status=503)
    return openid


def user_for_mp_openid(openid: str) -> User | None:
    """Return the active user bound to this mini-program openid."""
    return db.session.scalar(select(User).where(User.mp_openid == openid, User.active))


def bind_mp_openid(invite_code: str, openid: str) -> User:
    """Bind ``openid`` (mini-program) to the invite's user and use the invite up.

    Refuses unknown, used and expired codes, an inactive user and an openid bound to someone
    else, with the same messages as the official-account binding.
    """
    code = normalise_code(invite_code)
    if not code:
        raise UserError("请输入邀请码", field="invite_code")
    invite = db.session.scalar(
        select(WechatInvite).where(WechatInvite.code == code).with_for_update())
    if invite is None:
        raise UserError("邀请码不存在，请核对后重新输入", field="invite_code", status=404)
    if invite.used_at is not None:
        raise Conflict("该邀请码已被使用，请联系管理员重新生成", field="invite_code")
    if invite.expires_at <= utcnow():
        raise UserError("邀请码已过期，请联系管理员重新生成", field="invite_code", status=410)
    user = invite.user
    if not user.active:
        raise UserError("该账号已停用，无法绑定", field="invite_code", status=403)
    other = db.session.scalar(select(User).where(User.mp_openid == openid))
    if other is not None and other.id != user.id:
        raise Conflict(f"该微信已绑定账号“{other.display_name}”，请先解绑后再绑定", field="code")
    user.mp_openid = openid
    invite.used_at, invite.used_openid = utcnow(), openid
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict("该微信已绑定其他账号，请先解绑后再绑定", field="code") from None
    log.info("user %s bound to the mini-program via invite %s", user.id, invite.id)
    return user


def resolve_scan(actor: User, payload: str, request_origin: str) -> TestSystem:
    """Return the test system of a scanned label (its URL or bare token) for ``actor``.

    A label URL counts when it is on the public BASE_URL or the host the request came to;
    anything else is "not our label" (400). Foreign-scope and revoked labels answer 404 / 410
    as on the web (``qcwx.labels.services.resolve_label``).
    """
    origins = {labels.origin_of(current_app.config["BASE_URL"]), labels.origin_of(request_origin)}
    try:
        token = labels.find_label_token([payload], origins)
    except UserError:
        raise UserError("不是本平台的质控标签", field="payload") from None
    return labels.resolve_label(actor, token)
