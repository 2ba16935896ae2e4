"""Mini-program identity: turn a ``wx.login`` code into an openid, and bind it via an invite.

``code2session`` goes through the shared-token client of :mod:`qcwx.wechat.client` (the
local fake in development). Binding reuses the invite codes of :mod:`qcwx.wechat.services`
(same codes, same normalisation, same refusals); it differs only in the column it fills:
``User.mp_openid`` — a mini-program has its own appid, so the same person has another openid
there. Services flush, never commit. The endpoints are in ``miniprogram_api``.
"""

from __future__ import annotations

import logging

import redis
import requests
from sqlalchemy import select
from wechatpy.exceptions import WeChatClientException

from qcwx.errors import ExternalServiceError, UserError
from qcwx.extensions import db
from qcwx.orgs.models import User
from qcwx.wechat.client import mp_client
from qcwx.wechat.services import redeem_invite

__all__ = ["BAD_CODE_ERRCODES", "bind_mp_openid", "openid_from_code", "user_for_mp_openid"]

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

    The same invite rules and messages as the official-account binding.
    """
    return redeem_invite(invite_code, openid, attr="mp_openid", code_field="invite_code")
