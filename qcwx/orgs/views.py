"""Login and logout (desktop and phone share the page)."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user

from qcwx.errors import Forbidden
from qcwx.extensions import db, limiter, login_manager
from qcwx.orgs.forms import LoginForm
from qcwx.orgs.scopes import read_only_allowed, write_allowed
from qcwx.orgs.services import authenticate
from qcwx.web.security import end_all_sessions, login_account_key
from qcwx.web.urls import safe_next

bp = Blueprint("orgs", __name__)


@bp.before_app_request
def _refuse_read_only_writes() -> None:
    """Refuse every state-changing request of a read-only role (the expert) in one place.

    Views a read-only role may still POST to carry :func:`qcwx.orgs.scopes.read_only_allowed`.
    """
    if not current_user.is_authenticated:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if not write_allowed(current_user, request.method, view):
        raise Forbidden("专家组成员只能查看数据，不能修改")


def _safe_next(target: str | None) -> str:
    return safe_next(target, url_for("web.home"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_RATELIMIT_IP"], methods=["POST"],
               key_func=get_remote_address)
@limiter.limit(lambda: current_app.config["LOGIN_RATELIMIT_ACCOUNT"], methods=["POST"],
               key_func=login_account_key)
@read_only_allowed  # logging in again (as someone else) changes no data
def login():
    """Show the login form; on success go where the user was heading."""
    if (request.method == "GET" and "MicroMessenger" in request.headers.get("User-Agent", "")
            and not request.args.get("password")):
        # Inside WeChat the bound account logs in through OAuth, no password needed. The
        # "please log in" flash was meant for the form, which is skipped: drop it, or it would
        # greet the user on the page they land on, already logged in.
        _drop_flash(login_manager.login_message)
        return redirect(url_for("wechat.oauth_start", next=_safe_next(request.args.get("next"))))
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(form.username.data, form.password.data)
        if user is not None:
            login_user(user, remember=form.remember.data)
            return redirect(_safe_next(request.args.get("next")))
        form.password.errors.append("用户名或密码错误")
    return render_template("orgs/login.html", form=form)


def _drop_flash(message: str | None) -> None:
    """Remove a pending flash ``message`` (others stay)."""
    flashes = session.get("_flashes")
    if message and flashes:
        session["_flashes"] = [f for f in flashes if f[1] != message]


@bp.route("/logout", methods=["POST"])
@read_only_allowed  # ends the session, changes no data
@login_required
def logout():
    """End the session, and every other session and remember-me cookie of this account."""
    end_all_sessions(current_user)
    db.session.commit()
    logout_user()
    flash("已退出登录")
    return redirect(url_for("orgs.login"))


@bp.get("/me")
@login_required
def me():
    """我的: who I am, my scope, my WeChat binding, my reports and links, and logout."""
    from qcwx.web.forms import current_actor

    return render_template("orgs/me.html", user=current_actor())
