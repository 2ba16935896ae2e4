"""User maintenance from the admin: the role/scope rules of ``orgs.services.create_user``.

Creation goes through ``create_user`` itself; editing applies the same rules here (there is
no ``update_user`` service yet). A centre manages users of its own region and the regions
below it (``orgs.scopes.region_subtree``) and never creates or edits platform admins. An
expert (专家组成员) belongs to a region like a centre user.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from qcwx.errors import Forbidden, UserError
from qcwx.extensions import db
from qcwx.orgs.models import ROLES, Hospital, Lab, Region, User
from qcwx.orgs.scopes import region_in_scope
from qcwx.orgs.services import create_user

MIN_PASSWORD = 8


@dataclass(frozen=True)
class UserScope:
    """The scope fields that fit a role: lab roles carry lab, hospital and region, and so on."""

    role: str
    region_id: int | None = None
    hospital_id: int | None = None
    lab_id: int | None = None


def resolve_scope(actor: User, role: str, region: Region | None, hospital: Hospital | None,
                  lab: Lab | None) -> UserScope:
    """Return the scope fields for ``role``, refusing what the role or the actor does not allow."""
    if role not in ROLES:
        raise UserError(f"未知角色“{role}”", field="role")
    if role in ("supervisor", "technician"):
        if lab is None:
            raise UserError("该角色必须指定实验室", field="lab")
        scope = UserScope(role, lab.hospital.region_id, lab.hospital_id, lab.id)
    elif role == "director":
        if hospital is None:
            raise UserError("科主任必须指定医院", field="hospital")
        scope = UserScope(role, hospital.region_id, hospital.id)
    elif role == "center":
        if region is None:
            raise UserError("质控中心用户必须指定区域", field="region")
        scope = UserScope(role, region.id)
    elif role == "expert":
        if region is None:
            raise UserError("专家组成员必须指定所属区域", field="region")
        scope = UserScope(role, region.id)
    else:
        scope = UserScope(role)
    _check_actor(actor, scope)
    return scope


def _check_actor(actor: User, scope: UserScope) -> None:
    if actor.role == "admin":
        return
    if actor.role != "center":
        raise Forbidden()
    if scope.role == "admin":
        raise Forbidden("质控中心不能创建或修改平台管理员")
    if not region_in_scope(actor, scope.region_id):
        raise Forbidden("只能管理本区域及下级区域的用户")


def admin_create_user(actor: User, *, username: str, display_name: str, password: str,
                      scope: UserScope, phone: str | None, active: bool) -> User:
    """Create a user through ``create_user`` (hashes the password); flushes, never commits."""
    user = create_user(
        username=username, display_name=display_name, password=password or "", role=scope.role,
        region_id=scope.region_id, hospital_id=scope.hospital_id, lab_id=scope.lab_id,
    )
    user.phone = phone or None
    user.active = active
    db.session.flush()
    return user


def admin_update_user(user: User, *, username: str, display_name: str, password: str | None,
                      scope: UserScope, phone: str | None, active: bool) -> User:
    """Apply an edit with the same rules as creation; a blank password keeps the old one."""
    username = username.strip()
    clash = db.session.scalar(select(User.id).where(User.username == username, User.id != user.id))
    if clash:
        raise UserError(f"用户名“{username}”已存在", field="username", status=409)
    if password:
        if len(password) < MIN_PASSWORD:
            raise UserError(f"密码至少 {MIN_PASSWORD} 位", field="password")
        user.set_password(password)
    user.username, user.display_name = username, display_name
    user.role, user.region_id = scope.role, scope.region_id
    user.hospital_id, user.lab_id = scope.hospital_id, scope.lab_id
    user.phone, user.active = phone or None, active
    db.session.flush()
    db.session.expire(user, ["region", "hospital", "lab"])
    return user
