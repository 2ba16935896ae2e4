"""JWTs of the mini-program: issued after ``code2session``, checked on every endpoint.

The mini-program has no cookie session, so each request carries ``Authorization: Bearer
<jwt>`` (HS256, lifetime ``QCWX_JWT_TTL``). The HMAC key is derived from ``SECRET_KEY``
(SHA-256 of a purpose label and the secret): always 32 bytes as RFC 7518 asks, and a token can
never double as a session cookie or CSRF signature. The token names the user and the
mini-program openid it was issued to: unbinding the openid or deactivating the user revokes
every token at once, without a blacklist.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import jwt
from flask import current_app, g, request

from qcwx.errors import Forbidden, UserError
from qcwx.extensions import db
from qcwx.numbers import parse_id
from qcwx.orgs.models import User
from qcwx.orgs.scopes import write_allowed

AUDIENCE = "qcwx-mp"
EXPIRED = "登录已过期，请重新登录"  # by PyJWT on the first check, by _claims on a kept one
ALGORITHM = "HS256"


class Unauthorized(UserError):
    """The request carries no valid token: the mini-program should log in again (401)."""

    status = 401

    def __init__(self, message: str = "请先登录"):
        super().__init__(message, field="Authorization")


def signing_key() -> bytes:
    """Return the JWT key: SHA-256 over a purpose label and ``SECRET_KEY``."""
    return hashlib.sha256(b"qcwx-mp-jwt:" + current_app.config["SECRET_KEY"].encode()).digest()


def issue_token(user: User) -> dict:
    """Return ``{token, expires_in}`` for ``user`` (who must have a mini-program openid)."""
    ttl = int(current_app.config["JWT_TTL"])
    now = datetime.now(timezone.utc)
    claims = {"sub": str(user.id), "oid": user.mp_openid, "aud": AUDIENCE, "iat": now,
              "exp": now + timedelta(seconds=ttl)}
    token = jwt.encode(claims, signing_key(), algorithm=ALGORITHM)
    return {"token": token, "expires_in": ttl}


def user_from_header(header: str | None, preload: Callable[[int], object] | None = None
                     ) -> User:
    """Return the active, still-bound user of a ``Bearer`` header, else raise 401.

    ``preload``, given the token's user id once its signature and expiry are checked, may
    read the user together with what the view needs (one round trip instead of two); its
    answer is held in ``g`` for the request, and the user is checked here as ever.
    """
    if not header or not header.startswith("Bearer ") or not header[7:].strip():
        raise Unauthorized()
    claims = _claims(header[7:].strip())
    uid = _subject(claims)
    if preload is not None:
        g.mp_preloaded = preload(uid)
    user = db.session.get(User, uid)
    if user is None or not user.active or not user.mp_openid or user.mp_openid != claims.get(
            "oid"):
        raise Unauthorized("账号已解绑或停用，请重新登录")
    return user


def _claims(token: str) -> Mapping:
    """Return the verified claims of ``token``, its expiry checked now.

    A phone sends the same token with every request until it expires, and the rate limiter
    names its bucket from it before the view checks it again: the signature is verified once
    per token and process (:func:`_verified`), the expiry on every use. A refused token is
    never kept (``lru_cache`` does not keep a raised error).
    """
    claims = _verified(signing_key(), token)
    if claims["exp"] <= time.time():  # as PyJWT decides expiry, without leeway
        raise Unauthorized(EXPIRED)
    return claims


@functools.lru_cache(maxsize=4096)
def _verified(key: bytes, token: str) -> Mapping:
    """The claims of ``token`` signed with ``key``, read-only; else raise :class:`Unauthorized`.

    Keyed by the key as well, so a changed ``SECRET_KEY`` verifies every token again.
    """
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE,
                            options={"require": ["exp", "sub", "aud"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized(EXPIRED) from None
    except jwt.InvalidTokenError:
        raise Unauthorized("登录凭证无效，请重新登录") from None
    return MappingProxyType(claims)


def _subject(claims: Mapping) -> int:
    uid = parse_id(claims.get("sub"))
    if uid is None:
        raise Unauthorized("登录凭证无效，请重新登录")
    return uid


def user_id_from_token(token: str) -> int:
    """Return the user id of a valid token without loading the user (rate-limit buckets)."""
    return _subject(_claims(token))


def mp_login_required(view=None, *, preload: Callable[[int], object] | None = None):
    """Require a valid JWT; the user is then ``g.mp_user`` (``preload``: see user_from_header).

    Used bare (``@mp_login_required``) or with a preload (``@mp_login_required(preload=f)``).
    """
    if view is None:
        return functools.partial(mp_login_required, preload=preload)

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.mp_user = user_from_header(request.headers.get("Authorization"), preload)
        if not write_allowed(g.mp_user, request.method,
                             current_app.view_functions.get(request.endpoint or "")):
            raise Forbidden("专家组成员只能查看数据，不能修改")
        return view(*args, **kwargs)

    return wrapper


def current_mp_user() -> User:
    """Return the user authenticated by ``mp_login_required``."""
    return g.mp_user
