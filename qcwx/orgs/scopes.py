"""The one place that decides what an actor may see: every list query starts here.

Scope is applied inside the SQL (``lab_ids_in_scope``), so rows outside it are never loaded.
Objects outside the scope answer 404, exactly like objects that do not exist, so ids cannot be
probed. Below ``center`` other labs appear only by anonymous code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Select, select

from qcwx.errors import Forbidden, NotFound
from qcwx.extensions import db
from qcwx.orgs.models import Hospital, Lab, User

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

T = TypeVar("T")

SEES_IDENTITIES = {"admin", "center"}
LAB_ROLES = {"supervisor", "technician"}
ROLE_RANK = {"admin": 5, "center": 4, "director": 3, "supervisor": 2, "technician": 1}


def lab_ids_in_scope(actor: User) -> Select:
    """Return a SELECT of the lab ids ``actor`` may see raw data of."""
    stmt = select(Lab.id)
    if actor.role == "admin":
        return stmt
    if actor.role == "center":
        return stmt.join(Hospital).where(Hospital.region_id == actor.region_id)
    if actor.role == "director":
        return stmt.where(Lab.hospital_id == actor.hospital_id)
    if actor.role in LAB_ROLES:
        return stmt.where(Lab.id == actor.lab_id)
    return stmt.where(Lab.id.is_(None))  # unknown role sees nothing


def in_scope(actor: User, lab_column: ColumnElement) -> ColumnElement:
    """Return a WHERE clause restricting ``lab_column`` to the actor's labs."""
    return lab_column.in_(lab_ids_in_scope(actor))


def scoped(stmt: Select, actor: User, lab_column: ColumnElement) -> Select:
    """Add the actor's scope to ``stmt`` (the usual way to build a list query)."""
    return stmt.where(in_scope(actor, lab_column))


def can_access_lab(actor: User, lab_id: int | None) -> bool:
    """Return whether ``lab_id`` is inside the actor's scope."""
    if lab_id is None:
        return False
    stmt = lab_ids_in_scope(actor).where(Lab.id == lab_id)
    return db.session.execute(stmt).first() is not None


def get_lab_object(actor: User, model: type[T], object_id: int, lab_attr: str = "lab_id") -> T:
    """Load ``model`` by id when its lab is in scope, else raise ``NotFound`` (404)."""
    obj = db.session.get(model, object_id)
    if obj is None or not can_access_lab(actor, getattr(obj, lab_attr)):
        raise NotFound()
    return obj


def require_role(actor: User, *roles: str) -> None:
    """Raise ``Forbidden`` unless the actor has one of ``roles``."""
    if actor.role not in roles:
        raise Forbidden()


def sees_identities(actor: User) -> bool:
    """Return whether the actor may see other labs' names (centre and admin only)."""
    return actor.role in SEES_IDENTITIES


def lab_label(actor: User, lab: Lab) -> str:
    """Return the lab's name for the actor: its name when allowed, else its anonymous code."""
    if sees_identities(actor) or can_access_lab(actor, lab.id):
        return lab.full_name
    return lab.anon_code
