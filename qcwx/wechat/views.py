"""WeChat endpoints: the official-account callback, H5 OAuth login, binding, invites, JS-SDK.

Views stay thin: check the request, call one service, commit once, answer. The callback is
exempt from CSRF (WeChat cannot send our token) and authenticates every request by its
signature instead, refusing stale timestamps so a captured request cannot be replayed later.
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import qrcode
import qrcode.image.svg
from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_required, login_user
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature
from werkzeug.routing import BuildError

from qcwx.errors import ExternalServiceError, NotFound, UserError
from qcwx.extensions import db
from qcwx.numbers import ascii_int
from qcwx.orgs.models import User
from qcwx.orgs.scopes import read_only_allowed
from qcwx.web.forms import current_actor, form_post
from qcwx.web.urls import safe_next
from qcwx.wechat import guard, replies, services
from qcwx.wechat.models import WechatInvite

logger = logging.getLogger(__name__)
bp = Blueprint("wechat", __name__)

# Menu targets → endpoints to try in order, so the menu registered with WeChat never changes
# when a page moves or appears (e.g. a reports page added later).
MENU_TARGETS = {
    "home": ("web.home",),
    "reports": ("reports.mine", "reports.index", "web.home"),
    "actions": ("iqc.actions", "web.home"),
}


def _refuse(message: str, status: int = 403) -> Response:
    return Response(message, status=status, mimetype="text/plain")


@bp.errorhandler(ExternalServiceError)
def _external_error(exc: ExternalServiceError):
    db.session.rollback()
    logger.warning("WeChat unavailable on %s: %s", request.path, exc)
    message = "微信服务暂时不可用，请稍后再试"
    if request.path.startswith("/wechat/jssdk/"):
        return jsonify({"error": message, "field": None}), 503
    return render_template("error.html", status=503, message=message), 503


# -- official-account callback -------------------------------------------------------------
def _signature_problem() -> str | None:
    """Return why the callback's signature/timestamp is unacceptable, or None."""
    args = request.args
    signature, timestamp, nonce = args.get("signature"), args.get("timestamp"), args.get("nonce")
    if not (signature and timestamp and nonce):
        return "缺少签名参数"
    problem = guard.timestamp_problem(timestamp)
    if problem:
        return problem
    try:
        check_signature(current_app.config["WECHAT_TOKEN"], signature, timestamp, nonce)
    except InvalidSignatureException:
        return "签名校验失败"
    if not guard.first_use(timestamp, nonce):
        return "请求重复（时间戳与随机数已使用过）"
    return None


def _crypto() -> WeChatCrypto | None:
    key = current_app.config.get("WECHAT_AES_KEY")
    if not key:
        return None
    return WeChatCrypto(current_app.config["WECHAT_TOKEN"], key,
                        current_app.config["WECHAT_APPID"])


@bp.route("/wechat", methods=["GET", "POST"])
def callback():
    """Verify the server URL (GET) or answer a message (POST), plain or safe mode."""
    problem = _signature_problem()
    if problem:
        logger.warning("refused WeChat callback from %s: %s", request.remote_addr, problem)
        return _refuse(problem)
    if request.method == "GET":
        return _refuse("缺少 echostr", 400) if not request.args.get("echostr") else Response(
            request.args["echostr"], mimetype="text/plain")
    body = guard.read_body()
    if body is None:
        return _refuse("消息过大", 413)
    crypto = _crypto()
    if crypto is not None:
        if request.args.get("encrypt_type") != "aes" or not request.args.get("msg_signature"):
            # In safe mode only the encrypted body is covered by a signature.
            return _refuse("安全模式下只接受加密消息")
        try:
            body = crypto.decrypt_message(body, request.args["msg_signature"],
                                          request.args["timestamp"], request.args["nonce"])
        except InvalidSignatureException:
            return _refuse("消息签名校验失败")
        except Exception:  # noqa: BLE001 - any malformed ciphertext is the same bad request
            return _refuse("消息解密失败", 400)
    try:
        message = parse_message(body)
    except Exception:  # noqa: BLE001 - malformed XML from a caller that knew the token
        return _refuse("消息格式无效", 400)
    text = replies.reply_text(message)
    db.session.commit()
    if text is None:
        return Response("success", mimetype="text/plain")
    xml = TextReply(message=message, content=text).render()
    if crypto is not None:
        xml = crypto.encrypt_message(xml, request.args["nonce"])
    return Response(xml, mimetype="application/xml")


# -- H5 OAuth login ----------------------------------------------------------------------
@bp.get("/wechat/oauth/start")
def oauth_start():
    """Send the browser to WeChat's authorize page; it comes back to the callback."""
    next_url = safe_next(request.args.get("next"))
    bound = services.user_for_openid(services.session_openid())
    if current_user.is_authenticated and bound is not None and bound.id == current_user.id:
        return redirect(next_url)
    return redirect(services.oauth_authorize_url(next_url))


@bp.get("/wechat/oauth/callback")
def oauth_callback():
    """Turn the code into an openid; log a bound user in, else ask for an invite code."""
    openid, next_url = services.oauth_finish(request.args.get("code"), request.args.get("state"))
    user = services.user_for_openid(openid)
    if user is None:
        return redirect(url_for("wechat.bind", next=next_url))
    login_user(user)
    return redirect(next_url)


@bp.get("/wechat/go/<target>")
@login_required
def go(target: str):
    """Open a menu target's page (see ``MENU_TARGETS``)."""
    for endpoint in MENU_TARGETS.get(target, ()):
        try:
            return redirect(url_for(endpoint))
        except BuildError:
            continue
    raise NotFound("未找到该页面")


# -- binding --------------------------------------------------------------------------------
@bp.route("/wechat/bind", methods=["GET", "POST"])
def bind():
    """Ask for an invite code and bind the OAuth-proved WeChat account to its user."""
    openid = services.session_openid()
    next_url = safe_next(request.values.get("next"))
    if not openid:
        return redirect(url_for("wechat.oauth_start", next=request.full_path))
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        done = form_post(lambda: services.redeem_invite(request.form.get("code"), openid))
        if done.ok:
            login_user(done.value)
            flash(f"绑定成功：{done.value.display_name}")
            return redirect(next_url)
        errors, status = done.errors, done.status
    return render_template(
        "wechat/bind.html", errors=errors, next_url=next_url,
        code=request.values.get("code", ""), bound=services.user_for_openid(openid),
    ), status


@bp.post("/wechat/unbind")
@read_only_allowed  # a read-only expert may unbind its own WeChat (the service refuses others)
@login_required
def unbind():
    """Remove a WeChat binding: one's own, or (admin/centre) a user's in scope."""
    actor = current_actor()
    user_id = request.form.get("user_id")
    user = actor if not user_id or str(actor.id) == user_id else \
        services.load_manageable_user(actor, user_id)
    services.unbind(actor, user)
    db.session.commit()
    if user.id == actor.id:
        session.pop(services.SESSION_OPENID, None)
    flash(f"已解除 {user.display_name} 的微信绑定")
    fallback = url_for("wechat.invites") if actor.role in services.INVITER_ROLES else "/"
    return redirect(safe_next(request.form.get("next") or fallback))


# -- invites -------------------------------------------------------------------------------
@bp.route("/wechat/invites", methods=["GET", "POST"])
@login_required
def invites():
    """List recent invites of users in scope and issue a new one."""
    actor = current_actor()
    services.require_inviter(actor)
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        done = form_post(lambda: _create_invite(actor))
        if done.ok:
            return redirect(url_for("wechat.invite", invite_id=done.value.id))
        errors, status = done.errors, done.status
    return render_template(
        "wechat/invites.html", invites=services.list_invites(actor),
        users=services.manageable_users(actor), errors=errors,
        status_of=services.invite_status, default_days=services.INVITE_TTL.days,
    ), status


def _create_invite(actor: User) -> WechatInvite:
    """Issue an invite for the chosen user, valid for the chosen number of days."""
    user = services.load_manageable_user(actor, request.form.get("user_id"))
    return services.create_invite(actor, user, timedelta(days=_ttl_days()))


def _ttl_days() -> int:
    raw = (request.form.get("ttl_days") or str(services.INVITE_TTL.days)).strip()
    days = ascii_int(raw, 1, 30)
    if days is None:
        raise UserError("有效期应为 1–30 天", field="ttl_days")
    return days


@bp.get("/wechat/invites/<int:invite_id>")
@login_required
def invite(invite_id: int):
    """Show one invite: its code, the bind link and a QR code to scan in WeChat."""
    item = services.load_invite(current_actor(), invite_id)
    return render_template("wechat/invite.html", invite=item, status=services.invite_status(item),
                           link=services.bind_url(item.code))


@bp.get("/wechat/invites/<int:invite_id>/qr.svg")
@login_required
def invite_qr(invite_id: int):
    """Return the QR code (SVG) of the invite's bind link."""
    item = services.load_invite(current_actor(), invite_id)
    buf = io.BytesIO()
    qrcode.make(services.bind_url(item.code), image_factory=qrcode.image.svg.SvgPathImage,
                box_size=8).save(buf)
    return Response(buf.getvalue(), mimetype="image/svg+xml",
                    headers={"Cache-Control": "private, no-store"})


# -- JS-SDK --------------------------------------------------------------------------------
def _shared_report_page(url: str | None) -> bool:
    """Return whether ``url`` is a live share link: its anonymous viewer may forward it.

    Whoever opened a report from a group chat has no account, yet must be able to forward
    it with the same card; only pages of a valid link are signed for them.
    """
    from qcwx.reports.services import is_share_page

    return is_share_page(url)


@bp.get("/wechat/jssdk/config")
def jssdk_config():
    """Return the signed ``wx.config`` parameters for a page of this site."""
    if not current_user.is_authenticated and not _shared_report_page(request.args.get("url")):
        return jsonify({"error": "请先登录", "field": None}), 401
    try:
        config = services.jssdk_config(request.args.get("url"))
    except UserError as exc:
        return jsonify(exc.to_dict()), exc.status
    return jsonify(config.as_dict())
