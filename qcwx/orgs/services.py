"""Account services: authenticate, create users with a role valid for their scope."""

from __future__ import annotations

from sqlalchemy import select

from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.orgs.models import ROLES, Lab, User


def authenticate(username: str, password: str) -> User | None:
    """Return the active user with these credentials, else None (same answer for both faults)."""
    user = db.session.scalar(select(User).where(User.username == username.strip()))
    if user is None or not user.active or not user.check_password(password):
        return None
    return user


def create_user(
    *,
    username: str,
    display_name: str,
    password: str,
    role: str,
    region_id: int | None = None,
    hospital_id: int | None = None,
    lab_id: int | None = None,
) -> User:
    """Create a user whose scope fields fit the role (a lab role needs a lab, and so on)."""
    if role not in ROLES:
        raise UserError(f"未知角色“{role}”", field="role")
    if role in ("supervisor", "technician"):
        if lab_id is None:
            raise UserError("该角色必须指定实验室", field="lab_id")
        lab = db.session.get(Lab, lab_id)
        if lab is None:
            raise UserError("实验室不存在", field="lab_id")
        hospital_id, region_id = lab.hospital_id, lab.hospital.region_id
    if role == "director" and hospital_id is None:
        raise UserError("科主任必须指定医院", field="hospital_id")
    if role == "center" and region_id is None:
        raise UserError("质控中心用户必须指定区域", field="region_id")
    if role == "expert" and region_id is None:
        raise UserError("专家组成员必须指定所属区域", field="region_id")
    if len(password) < 8:
        raise UserError("密码至少 8 位", field="password")
    if db.session.scalar(select(User.id).where(User.username == username)):
        raise UserError(f"用户名“{username}”已存在", field="username", status=409)
    user = User(
        username=username, display_name=display_name, role=role,
        region_id=region_id, hospital_id=hospital_id, lab_id=lab_id,
    )
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    return user
