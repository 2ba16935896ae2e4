"""Binding WeChat accounts to users: invites, H5 OAuth login, unbinding, JS-SDK config.

A WeChat openid is an identity only after a person with the authority to vouch for the user
(the regional centre, a director or supervisor in whose scope the user is) handed them a
one-time invite code; redeeming it binds the openid that OAuth proved. From then on, opening
any page inside WeChat logs the user in without a password, so every step here refuses
rather than guesses: codes expire, are used once, and an openid never silently moves from one
account to another.

Services flush, never commit; the view commits once at the end of the request.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import requests
from flask import current_app, session
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from wechatpy.exceptions import WeChatClientException, WeChatOAuthException
from wechatpy.utils import random_string

from qcwx.errors import Conflict, ExternalServiceError, Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.numbers import parse_id
from qcwx.orgs.models import Lab, User
from qcwx.orgs.scopes import (
    can_access_lab,
    lab_ids_in_scope,
    outranks,
    region_ids_in_scope,
    require_role,
    roles_below,
)
from qcwx.timeutil import utcnow
from qcwx.web.urls import base_url, public_url, safe_next
from qcwx.wechat import client as wechat_client
from qcwx.wechat.models import WechatInvite
from qcwx.wechat.token import jsapi_ticket

logger = logging.getLogger(__name__)

INVITE_TTL = timedelta(days=7)
INVITER_ROLES = ("admin", "center", "director", "supervisor")
UNBIND_ROLES = ("admin", "center")
# No 0/O, 1/I/L: codes are read off a screen and typed on a phone.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
OAUTH_STATE_MAX_AGE = 600
SESSION_OPENID = "wechat_openid"
SESSION_NONCE = "wechat_oauth_nonce"
JSAPI_LIST = ("scanQRCode", "updateAppMessageShareData", "updateTimelineShareData",
              "onMenuShareAppMessage")


# -- who may manage whose binding ---------------------------------------------------------
def manageable_users_stmt(actor: User):
    """Return a SELECT of the active users whose WeChat binding ``actor`` may manage.

    In scope: users of its labs, directors of its hospitals, centre users of its regions; only
    of a strictly lower role (``scopes.outranks``); and always the actor themselves.
    """
    lower = roles_below(actor)
    stmt = select(User).where(User.active)
    if actor.role == "admin":
        return stmt.where(or_(User.id == actor.id, User.role.in_(lower))).order_by(User.id)
    labs = lab_ids_in_scope(actor)
    hospitals = select(Lab.hospital_id).where(Lab.id.in_(lab_ids_in_scope(actor)))
    clauses = [User.lab_id.in_(labs)]
    if actor.role in ("center", "director"):
        clauses.append(and_(User.lab_id.is_(None), User.hospital_id.in_(hospitals)))
    if actor.role == "center":
        clauses.append(and_(User.hospital_id.is_(None),
                            User.region_id.in_(region_ids_in_scope(actor))))
    return stmt.where(or_(User.id == actor.id, and_(or_(*clauses), User.role.in_(lower)))
                      ).order_by(User.id)


def manages(actor: User, user: User) -> bool:
    """Return whether ``actor`` may issue invites for / unbind ``user``."""
    if actor.role not in INVITER_ROLES or not outranks(actor, user):
        return False
    if actor.role == "admin" or actor.id == user.id:
        return True
    if user.lab_id is not None and not can_access_lab(actor, user.lab_id):
        return False
    stmt = manageable_users_stmt(actor).where(User.id == user.id)
    return db.session.execute(stmt.with_only_columns(User.id)).first() is not None


def manageable_users(actor: User) -> list[User]:
    """Return the users the actor may invite, for the invite form."""
    require_role(actor, *INVITER_ROLES)
    return list(db.session.scalars(manageable_users_stmt(actor)))


def load_manageable_user(actor: User, user_id: int | str | None) -> User:
    """Load a user the actor may manage, else 404 (same answer as a missing user)."""
    uid = parse_id(user_id)
    if uid is None:
        raise UserError("请选择用户", field="user_id")
    user = db.session.get(User, uid)
    if user is None or not manages(actor, user):
        raise NotFound("未找到该用户或无权管理", field="user_id")
    return user


# -- invites ------------------------------------------------------------------------------
def _new_code() -> str:
    for _ in range(10):
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if not db.session.scalar(select(WechatInvite.id).where(WechatInvite.code == code)):
            return code
    raise ExternalServiceError("could not draw a unique invite code")  # pragma: no cover


def normalise_code(code: str | None) -> str:
    """Return the code as stored: upper case, no spaces or dashes (people type both)."""
    return "".join(ch for ch in (code or "").upper() if ch.isalnum())


def create_invite(actor: User, user: User, ttl: timedelta = INVITE_TTL) -> WechatInvite:
    """Issue a one-time code that binds the WeChat account redeeming it to ``user``."""
    require_role(actor, *INVITER_ROLES)
    if not manages(actor, user):
        raise NotFound("未找到该用户或无权管理", field="user_id")
    if not user.active:
        raise UserError("该账号已停用，不能生成绑定邀请", field="user_id")
    if ttl <= timedelta(0):
        raise UserError("有效期必须大于 0", field="ttl")
    now = utcnow()
    invite = WechatInvite(code=_new_code(), user=user, user_id=user.id,
                          created_by_id=actor.id, created_at=now, expires_at=now + ttl)
    db.session.add(invite)
    db.session.flush()
    logger.info("invite %s issued by user %s for user %s", invite.id, actor.id, user.id)
    return invite


def list_invites(actor: User, limit: int = 100) -> list[WechatInvite]:
    """Return the newest invites for users the actor manages."""
    require_role(actor, *INVITER_ROLES)
    users = manageable_users_stmt(actor).with_only_columns(User.id).order_by(None)
    stmt = (select(WechatInvite).where(WechatInvite.user_id.in_(users))
            .order_by(WechatInvite.created_at.desc(), WechatInvite.id.desc()).limit(limit))
    return list(db.session.scalars(stmt))


def load_invite(actor: User, invite_id: int) -> WechatInvite:
    """Load an invite of a user the actor manages, else 404."""
    invite = db.session.get(WechatInvite, invite_id)
    if invite is None or not manages(actor, invite.user):
        raise NotFound()
    return invite


def invite_status(invite: WechatInvite) -> str:
    """Return 已使用 / 已过期 / 有效 for display."""
    if invite.used_at is not None:
        return "已使用"
    if invite.expires_at <= utcnow():
        return "已过期"
    return "有效"


def bind_url(code: str | None = None) -> str:
    """Return the public URL of the bind page (with the code, for the invite's QR)."""
    return public_url("/wechat/bind" + (f"?code={code}" if code else ""))


BINDABLE = ("wechat_openid", "mp_openid")


def redeem_invite(code: str | None, openid: str | None, *, attr: str = "wechat_openid",
                  code_field: str = "code") -> User:
    """Bind ``openid`` to the invite's user and use the invite up; return the user.

    Refuses unknown, used and expired codes, an inactive user, an issuer not outranking the
    user, and a user or openid already bound to another WeChat account / user: a binding is
    removed first (``unbind``), so an account is never taken over silently.
    ``attr`` is ``wechat_openid`` (official account) or ``mp_openid`` (mini-program: another
    appid gives the same person another openid); ``code_field`` names the code in errors.
    """
    if attr not in BINDABLE:
        raise ValueError(f"cannot bind {attr}")
    if not openid:
        raise UserError("未获取到微信身份，请在微信中重新打开绑定页面", field="openid", status=401)
    code = normalise_code(code)
    if not code:
        raise UserError("请输入邀请码", field=code_field)
    invite = db.session.scalar(
        select(WechatInvite).where(WechatInvite.code == code).with_for_update())
    if invite is None:
        raise UserError("邀请码不存在，请核对后重新输入", field=code_field, status=404)
    if invite.used_at is not None:
        raise Conflict("该邀请码已被使用，请联系管理员重新生成", field=code_field)
    if invite.expires_at <= utcnow():
        raise UserError("邀请码已过期，请联系管理员重新生成", field=code_field, status=410)
    user = invite.user
    if not user.active:
        raise UserError("该账号已停用，无法绑定", field=code_field, status=403)
    if not outranks(db.session.get(User, invite.created_by_id or 0), user):
        raise UserError("该邀请码无效：只能由更高级别的管理人员为本人生成，请联系管理员",
                        field=code_field, status=403)
    if getattr(user, attr) not in (None, "", openid):  # unbind first: never replaced silently
        raise Conflict(f"账号“{user.display_name}”已绑定另一个微信，请先解除绑定后再绑定",
                       field=code_field)
    other = db.session.scalar(select(User).where(getattr(User, attr) == openid))
    if other is not None and other.id != user.id:
        raise Conflict(f"该微信已绑定账号“{other.display_name}”，请先解绑后再绑定",
                       field="openid")
    setattr(user, attr, openid)
    invite.used_at = utcnow()
    invite.used_openid = openid
    try:
        db.session.flush()
    except IntegrityError:
        raise Conflict("该微信已绑定其他账号，请先解绑后再绑定", field="openid") from None
    logger.info("user %s bound to WeChat via invite %s", user.id, invite.id)
    return user


def user_for_openid(openid: str | None, active_only: bool = True) -> User | None:
    """Return the user bound to ``openid`` (active users only, unless told otherwise)."""
    if not openid:
        return None
    stmt = select(User).where(User.wechat_openid == openid)
    if active_only:
        stmt = stmt.where(User.active)
    return db.session.scalar(stmt)


def unbind(actor: User, user: User) -> None:
    """Remove ``user``'s WeChat and mini-program bindings: by themselves or a managing centre."""
    if actor.id != user.id:
        require_role(actor, *UNBIND_ROLES)
        if not manages(actor, user):
            raise NotFound("未找到该用户或无权管理", field="user_id")
    if not user.wechat_openid and not user.mp_openid:
        raise UserError("该账号尚未绑定微信", field="user_id")
    user.wechat_openid = None
    user.mp_openid = None
    db.session.flush()
    logger.info("user %s unbound from WeChat by user %s", user.id, actor.id)


# -- H5 OAuth -----------------------------------------------------------------------------
def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="qcwx-wechat-oauth")


def callback_url() -> str:
    """Return the OAuth redirect URI on the public host (WeChat checks its domain)."""
    return public_url("/wechat/oauth/callback")


def oauth_authorize_url(next_url: str | None) -> str:
    """Return WeChat's authorize URL; the state is signed, carries ``next`` and a nonce.

    The nonce is also kept in this browser's session, so a callback started elsewhere (a
    link an attacker sends with their own code) cannot log this browser in.
    """
    nonce = secrets.token_urlsafe(12)
    session[SESSION_NONCE] = nonce
    state = _serializer().dumps({"next": safe_next(next_url), "nonce": nonce})
    return wechat_client.oauth(current_app._get_current_object(), callback_url(),
                               state=state).authorize_url


def oauth_finish(code: str | None, state: str | None) -> tuple[str, str]:
    """Check the state, exchange ``code`` for the openid; return (openid, next path)."""
    if not state:
        raise UserError("缺少授权状态参数，请重新进入", field="state")
    try:
        data = _serializer().loads(state, max_age=OAUTH_STATE_MAX_AGE)
    except BadSignature:
        raise UserError("授权状态无效或已过期，请重新进入", field="state") from None
    nonce = session.pop(SESSION_NONCE, None)
    if not isinstance(data, dict) or not nonce or data.get("nonce") != nonce:
        raise UserError("授权状态与当前会话不符，请重新进入", field="state")
    if not code:
        raise UserError("您未同意授权，无法使用微信登录", field="code", status=403)
    oauth = wechat_client.oauth(current_app._get_current_object(), callback_url())
    try:
        result = oauth.fetch_access_token(code)
    except WeChatOAuthException as exc:
        logger.info("OAuth code rejected by WeChat: %s", exc.errcode)
        raise UserError("微信授权码无效或已使用，请重新进入", field="code") from None
    except requests.RequestException as exc:
        raise ExternalServiceError(f"WeChat OAuth unreachable: {exc}") from exc
    openid = result.get("openid")
    if not openid:
        raise ExternalServiceError("WeChat OAuth answered without an openid")
    remember_openid(openid)
    return openid, safe_next(data.get("next"))


def remember_openid(openid: str) -> None:
    """Keep the OAuth-proved openid in the session for the bind page."""
    session[SESSION_OPENID] = openid


def session_openid() -> str | None:
    """Return the openid OAuth proved for this browser session, if any."""
    return session.get(SESSION_OPENID)


# -- JS-SDK -------------------------------------------------------------------------------
@dataclass(frozen=True)
class JsSdkConfig:
    """What ``wx.config`` needs, in the JS-SDK's own key names (see ``as_dict``)."""

    app_id: str
    timestamp: int
    nonce_str: str
    signature: str
    js_api_list: tuple[str, ...]

    def as_dict(self) -> dict:
        """Return the JSON body with the JS-SDK's camelCase keys."""
        return {"appId": self.app_id, "timestamp": self.timestamp, "nonceStr": self.nonce_str,
                "signature": self.signature, "jsApiList": list(self.js_api_list)}


def check_page_url(url: str | None) -> str:
    """Return the page URL to sign (without its #fragment) if it lies on our public host."""
    if not url or not url.strip():
        raise UserError("缺少参数 url", field="url")
    url = url.strip().split("#", 1)[0]
    parts = urlsplit(url)
    ours = urlsplit(base_url())
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != ours.netloc.lower():
        raise UserError(f"url 必须是本站（{ours.netloc}）的页面地址", field="url")
    return url


def jssdk_config(url: str | None) -> JsSdkConfig:
    """Sign ``url`` for ``wx.config`` with the shared jsapi ticket."""
    url = check_page_url(url)
    client = wechat_client.official_client()
    try:
        ticket = jsapi_ticket(client)
    except (WeChatClientException, requests.RequestException) as exc:
        raise ExternalServiceError(f"WeChat jsapi ticket unavailable: {exc}") from exc
    nonce, timestamp = random_string(16), int(time.time())
    signature = client.jsapi.get_jsapi_signature(nonce, ticket, timestamp, url)
    return JsSdkConfig(client.appid, timestamp, nonce, signature, JSAPI_LIST)


def require_inviter(actor: User) -> None:
    """Raise ``Forbidden`` unless the actor may issue invites."""
    if actor.role not in INVITER_ROLES:
        raise Forbidden("只有质控中心、科主任或质控主管可以生成微信绑定邀请")


# -- menu -----------------------------------------------------------------------------------
MENU_FILE = Path(__file__).with_name("menu.json")


def menu_definition(base: str | None = None) -> dict:
    """Return the menu of ``menu.json`` as WeChat expects it, URLs on our public host."""
    base = (base or base_url()).rstrip("/")
    data = json.loads(MENU_FILE.read_text(encoding="utf-8"))

    def fill(button: dict) -> dict:
        out = {k: v for k, v in button.items() if k != "sub_button"}
        if "url" in out:
            out["url"] = out["url"].replace("{BASE_URL}", base)
        if button.get("sub_button"):
            out["sub_button"] = [fill(sub) for sub in button["sub_button"]]
        return out

    return {"button": [fill(b) for b in data["button"]]}


def publish_menu() -> dict:
    """Create the official account's menu from ``menu.json``; return WeChat's answer."""
    client = wechat_client.official_client()
    try:
        return client.menu.create(menu_definition())
    except (WeChatClientException, requests.RequestException) as exc:
        raise ExternalServiceError(f"WeChat menu/create failed: {exc}") from exc
