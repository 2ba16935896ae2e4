"""Response hardening, session versions and rate-limit keys: one place for each.

Why one module: the issue-14 probe found the production configuration weak — no security
headers, remember-me cookies that outlived logout and password changes, one rate-limit
bucket per address (a whole hospital behind one NAT shares it) and no per-account login
throttle. Each piece is small; together they are the app's response to an attacker.

- Headers on every response (pages, JSON, errors, static files): a CSP that runs only this
  site's scripts (except the admin's Flask-Admin pages), ``nosniff``, ``frame-ancestors``/``X-Frame-
  Options``, ``Referrer-Policy``, and HSTS in production.
- Sessions carry the user's ``session_version`` (``User.get_id`` is ``"<id>:<version>"``,
  in the session and in the signed remember-me cookie); logout and a password change bump
  it, so every earlier session and remember-me cookie of that user stops working.
- Rate-limit keys: a logged-in user or a mini-program token's user is its own bucket; only
  anonymous requests share their address's.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import Flask, Response, current_app, request
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

#: Longest a remember-me cookie lives (the issue's ceiling).
REMEMBER_DAYS = 30
HSTS = "max-age=31536000; includeSubDomains"
_BASE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
             "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
             "frame-ancestors 'none'; form-action 'self'")


def content_security_policy() -> str:
    """Return the CSP of this response: only our own scripts, except in the admin.

    Flask-Admin's templates use inline scripts, inline handlers and ``javascript:`` links
    (a nonce would not cover the handlers), so its pages, which only admins reach, allow
    inline code; every other page runs only files from ``/static``.
    """
    if request.path.startswith("/admin"):
        return f"{_BASE_CSP}; script-src 'self' 'unsafe-inline'"
    return f"{_BASE_CSP}; script-src 'self'"


def add_security_headers(response: Response) -> Response:
    """Set the security headers on every response (after_request)."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy())
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if current_app.config["ENV"] == "production":
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def cookie_settings(env: str) -> dict:
    """Return the session and remember-me cookie settings (Secure in production)."""
    secure = env == "production"
    return {"SESSION_COOKIE_HTTPONLY": True, "SESSION_COOKIE_SAMESITE": "Lax",
            "SESSION_COOKIE_SECURE": secure, "REMEMBER_COOKIE_HTTPONLY": True,
            "REMEMBER_COOKIE_SAMESITE": "Lax", "REMEMBER_COOKIE_SECURE": secure,
            "REMEMBER_COOKIE_DURATION": timedelta(days=REMEMBER_DAYS)}


# -- session versions ---------------------------------------------------------------------
def load_session_user(user_id: str):
    """Return the user of a session/remember id ``"<id>:<version>"`` if the version holds."""
    from qcwx.extensions import db
    from qcwx.numbers import parse_id
    from qcwx.orgs.models import User

    ident, _, version = str(user_id).partition(":")
    uid = parse_id(ident)
    user = db.session.get(User, uid) if uid is not None else None
    if user is None or version != str(user.session_version or 0):
        return None  # logged out elsewhere or password changed: this session is over
    return user


def end_all_sessions(user) -> None:
    """Invalidate every session and remember-me cookie of ``user`` (logout, new password)."""
    user.session_version = (user.session_version or 0) + 1


# -- rate-limit keys ----------------------------------------------------------------------
def rate_limit_key() -> str:
    """Return the bucket of this request: the user when authenticated, else the address.

    A hospital's phones share one NAT address; limiting them per address would throttle a
    whole lab. The mini-program's JWT is verified (a cheap HMAC) before it names a bucket,
    so junk tokens cannot spread requests over many buckets.
    """
    from flask_login import current_user

    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and request.path.startswith("/api/mp/"):
        # Before the cookie session: the mini-program sends none, and loading it cost a
        # submission ~1 % of its time (issue 14, py-spy).
        from miniprogram_api.auth import Unauthorized, user_id_from_token

        try:
            return f"mp:{user_id_from_token(header[7:].strip())}"
        except Unauthorized:
            pass
    if current_user and current_user.is_authenticated:
        return f"user:{current_user.id}"
    return f"ip:{get_remote_address()}"


def login_account_key() -> str:
    """Return the login throttle bucket of the account being tried (case- and space-folded)."""
    name = (request.form.get("username") or "").strip().casefold()
    digest = hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:24]
    return f"login-account:{digest}"


def install(app: Flask) -> None:
    """Add the headers to every response and trust ``PROXY_FIX`` reverse-proxy hops."""
    app.after_request(add_security_headers)
    hops = int(app.config.get("PROXY_FIX") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
