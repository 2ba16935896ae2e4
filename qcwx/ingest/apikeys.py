"""API keys of the lab-interface API: issued by the QC centre, shown once, stored hashed.

A key looks like ``qcwx_<prefix>_<secret>``: the 8-hex prefix is stored in clear so people
can tell keys apart in lists and logs; only the SHA-256 of the whole key is kept, so a
database leak does not leak usable keys. A key acts for exactly one lab, with a
technician's rights there (:func:`key_actor`), so every scope check of the submission
path applies unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from sqlalchemy import select

from qcwx.errors import Forbidden, NotFound, UserError
from qcwx.extensions import db
from qcwx.numbers import parse_id
from qcwx.orgs.models import ApiKey, Hospital, Lab, User
from qcwx.orgs.scopes import can_access_lab, scoped
from qcwx.timeutil import utcnow

KEY_ROLES = {"center", "admin"}
KEY_PATTERN = re.compile(r"qcwx_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})")
#: ``last_used_at`` is written at most this often (each write is an audited update).
TOUCH_EVERY = timedelta(minutes=5)


def hash_key(raw: str) -> str:
    """Return the stored form of a key (hex SHA-256)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def list_keys(actor: User) -> list[ApiKey]:
    """Return the keys of the labs in the actor's scope, newest first."""
    if actor.role not in KEY_ROLES:
        raise Forbidden("只有区域质控中心或平台管理员可以管理接口密钥")
    return list(db.session.scalars(scoped(select(ApiKey), actor, ApiKey.lab_id)
                                   .order_by(ApiKey.id.desc())))


def key_labs(actor: User) -> list[Lab]:
    """Return the labs the actor may issue keys for."""
    if actor.role not in KEY_ROLES:
        return []
    return list(db.session.scalars(scoped(select(Lab).join(Hospital), actor, Lab.id)
                                   .order_by(Hospital.name, Lab.name)))


def create_key(actor: User, lab_id, name: str) -> tuple[ApiKey, str]:
    """Issue a key for a lab in scope; return the row and the full key (shown only once)."""
    if actor.role not in KEY_ROLES:
        raise Forbidden("只有区域质控中心或平台管理员可以创建接口密钥")
    ident = parse_id(lab_id)
    lab = db.session.get(Lab, ident) if ident is not None else None
    if lab is None or not can_access_lab(actor, lab.id):
        raise NotFound("实验室不存在或无权访问", field="lab_id")
    name = (name or "").strip()
    if not name:
        raise UserError("请填写密钥名称（如：检验科 LIS 接口机）", field="name")
    if len(name) > 64:
        raise UserError("密钥名称过长（最多64个字符）", field="name")
    while True:
        prefix = secrets.token_hex(4)
        if db.session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            break
    raw = f"qcwx_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(lab_id=lab.id, name=name, prefix=prefix, key_hash=hash_key(raw),
                 created_by_id=actor.id)
    db.session.add(row)
    db.session.flush()
    return row, raw


def revoke_key(actor: User, key_id: int) -> ApiKey:
    """Revoke a key of a lab in scope (idempotent); it stops authenticating at once."""
    if actor.role not in KEY_ROLES:
        raise Forbidden("只有区域质控中心或平台管理员可以吊销接口密钥")
    row = db.session.get(ApiKey, key_id)
    if row is None or not can_access_lab(actor, row.lab_id):
        raise NotFound("密钥不存在或无权访问")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.flush()
    return row


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """Return the key a request presents (``Authorization: Bearer …`` or ``X-API-Key``)."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None


def key_prefix(raw: str | None) -> str | None:
    """Return the prefix of a well-formed key (for rate-limit buckets), else None."""
    match = KEY_PATTERN.fullmatch(raw or "")
    return match.group(1) if match else None


def authenticate(raw: str | None) -> ApiKey | None:
    """Return the active key matching ``raw``, or None (unknown, malformed or revoked)."""
    if not raw or len(raw) > 200:
        return None
    match = KEY_PATTERN.fullmatch(raw)
    if match is None:
        return None
    digest = hash_key(raw)
    row = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    if row.prefix != match.group(1) or row.revoked_at is not None:
        return None
    return row


def touch(row: ApiKey) -> None:
    """Record that the key was used (at most every few minutes, to keep the audit log lean)."""
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > TOUCH_EVERY:
        row.last_used_at = now
        db.session.flush()


def key_actor(row: ApiKey) -> User:
    """Return the transient actor a key submits as: a technician of the key's lab, no id.

    Never added to the session: submit_run reads only its role, lab and id, so the key gets
    exactly a technician's scope, and stored results show no person (``接口``) as enterer;
    the upload batch row names the key.
    """
    return User(id=None, username=f"apikey-{row.prefix}", display_name=f"接口密钥 {row.name}",
                role="technician", lab_id=row.lab_id, active=True)
