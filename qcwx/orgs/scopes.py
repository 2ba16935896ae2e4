"""The one place that decides what an actor may see and change: every list query starts here.

Scope is applied inside the SQL (``lab_ids_in_scope``), so rows outside it are never loaded.
Objects outside the scope answer 404, exactly like objects that do not exist, so ids cannot be
probed.

Regions form a tree (province → city → district/county). A centre (``center``) and an expert
(``expert``, 专家组成员) see their own region and every region below it, labs by name; the
subtree is a recursive CTE inside the same query. Everyone sees by name exactly the labs in
their scope; other labs appear only by anonymous code (:func:`lab_label`), whatever the role.

The expert is read-only on data: :func:`can_write` is False, and :func:`refuse_read_only_writes`
(a before-request hook) refuses every state-changing request of a read-only role unless the
view is marked with :func:`read_only_allowed` (logout and the like).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar

from flask import current_app
from sqlalchemy import Select, select

from qcwx.errors import Forbidden, NotFound
from qcwx.extensions import db
from qcwx.orgs.models import Hospital, Lab, Region, User

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

T = TypeVar("T")
F = TypeVar("F", bound=Callable)

# Roles whose scope is a region subtree (labs by name).
REGION_ROLES = frozenset({"center", "expert"})
# Roles that may open the centre's pages (matrix, NCCL table, exceptions, region reports).
CENTRE_READERS = frozenset({"admin", "center", "expert"})
# Roles that read but never change data: no results, limits, rules, sign-off, users, keys.
READ_ONLY_ROLES = frozenset({"expert"})
# Roles that manage their scope (share links, bindings, …) as a centre does. Kept under its old
# name: "sees identities" now means "the lab is in my subtree" (see lab_label).
SEES_IDENTITIES = frozenset({"admin", "center"})
LAB_ROLES = frozenset({"supervisor", "technician"})
# Invites and bindings reach only users of a strictly lower rank than the actor's (an equal
# could bind its own phone to a peer's account). The expert ranks with the director (below
# the centre, which may invite it); it invites nobody (it cannot write).
ROLE_RANK = {"admin": 5, "center": 4, "expert": 3, "director": 3, "supervisor": 2,
             "technician": 1}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY_OK = "_qcwx_read_only_ok"


# ------------------------------------------------------------------ region tree


def region_subtree(region_id: int | None) -> Select:
    """Return a SELECT of ``region_id`` and every region below it (a recursive CTE).

    The CTE gets an anonymous name, so several subtrees can sit in one statement.
    """
    tree = select(Region.id).where(Region.id == region_id).cte(recursive=True)
    tree = tree.union_all(select(Region.id).where(Region.parent_id == tree.c.id))
    return select(tree.c.id)


def region_ancestors(region_id: int | None) -> Select:
    """Return a SELECT of ``region_id`` and every region above it (whose centres oversee it)."""
    up = select(Region.id, Region.parent_id).where(Region.id == region_id).cte(recursive=True)
    up = up.union_all(select(Region.id, Region.parent_id).where(Region.id == up.c.parent_id))
    return select(up.c.id)


def region_in_subtree(root_id: int, region_id: int) -> bool:
    """Return whether ``region_id`` is ``root_id`` or a region below it."""
    ids = region_subtree(root_id).subquery()
    return db.session.execute(select(ids.c[0]).where(ids.c[0] == region_id)).first() is not None


def region_ids_in_scope(actor: User) -> Select:
    """Return a SELECT of the regions ``actor`` sees: all (admin), the subtree (centre, expert).

    Other roles see their own lab's or hospital's region only.
    """
    if actor.role == "admin":
        return select(Region.id)
    if actor.role in REGION_ROLES:
        return region_subtree(actor.region_id)
    if actor.role == "director" and actor.hospital_id is not None:
        return select(Hospital.region_id).where(Hospital.id == actor.hospital_id)
    if actor.lab_id is not None:
        return select(Hospital.region_id).join(Lab).where(Lab.id == actor.lab_id)
    return select(Region.id).where(Region.id.is_(None))


def region_in_scope(actor: User, region_id: int | None) -> bool:
    """Return whether ``region_id`` is one of the regions the actor sees."""
    if region_id is None:
        return False
    ids = region_ids_in_scope(actor).subquery()
    return db.session.execute(select(ids.c[0]).where(ids.c[0] == region_id)).first() is not None


def root_region_id(region_id: int) -> int:
    """Return the root of ``region_id``'s tree (the region itself when it has no parent)."""
    seen = {region_id}
    current = region_id
    while True:
        parent = db.session.scalar(select(Region.parent_id).where(Region.id == current))
        if parent is None or parent in seen:  # a cycle never loops forever
            return current
        seen.add(parent)
        current = parent


def peer_regions(region_id: int) -> Select | None:
    """Return a SELECT of the regions whose labs are compared with ``region_id``'s, None for all.

    Peer statistics use every lab of the region's whole tree (bigger groups are better); with
    ``PEER_POOL_TREES`` (the default) separate trees pool too. Pooling widens only the
    comparison group: names still follow :func:`lab_ids_in_scope`.
    """
    if current_app.config.get("PEER_POOL_TREES", True):
        return None
    return region_subtree(root_region_id(region_id))


def regions_in_scope(actor: User) -> list[Region]:
    """Return the regions the actor sees, each parent before its children (for pickers)."""
    regions = list(db.session.scalars(select(Region).where(
        Region.id.in_(region_ids_in_scope(actor))).order_by(Region.code, Region.id)))
    ids = {r.id for r in regions}
    children: dict[int | None, list[Region]] = {}
    for r in regions:
        children.setdefault(r.parent_id if r.parent_id in ids else None, []).append(r)
    out: list[Region] = []

    def walk(parent: int | None) -> None:
        for child in children.get(parent, []):
            if child not in out:
                out.append(child)
                walk(child.id)

    walk(None)
    return out


# ------------------------------------------------------------------ labs in scope


def lab_ids_in_scope(actor: User) -> Select:
    """Return a SELECT of the lab ids ``actor`` may see raw data and names of."""
    stmt = select(Lab.id)
    if actor.role == "admin":
        return stmt
    if actor.role in REGION_ROLES:
        return stmt.join(Hospital).where(Hospital.region_id.in_(region_subtree(actor.region_id)))
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
    """Return whether ``lab_id`` is inside the actor's scope.

    A lab-scoped user's answer needs no statement: their scope is their own lab, which
    exists (``user.lab_id`` is a foreign key). Every submission asks this (issue 14).
    """
    if lab_id is None:
        return False
    if actor.role in LAB_ROLES and isinstance(lab_id, int):
        return actor.lab_id is not None and actor.lab_id == lab_id
    stmt = lab_ids_in_scope(actor).where(Lab.id == lab_id)
    return db.session.execute(stmt).first() is not None


def get_lab_object(actor: User, model: type[T], object_id: int, lab_attr: str = "lab_id") -> T:
    """Load ``model`` by id when its lab is in scope, else raise ``NotFound`` (404)."""
    obj = db.session.get(model, object_id)
    if obj is None or not can_access_lab(actor, getattr(obj, lab_attr)):
        raise NotFound()
    return obj


# ------------------------------------------------------------------ roles and capabilities


def require_role(actor: User, *roles: str) -> None:
    """Raise ``Forbidden`` unless the actor has one of ``roles``."""
    if actor.role not in roles:
        raise Forbidden()


def roles_below(actor: User) -> list[str]:
    """Return the roles ranked strictly below the actor's (whom it may invite or unbind)."""
    own = ROLE_RANK.get(actor.role, 0)
    return [role for role, rank in ROLE_RANK.items() if rank < own]


def outranks(actor: User | None, user: User) -> bool:
    """Return whether ``actor`` is ``user`` or ranks strictly above them.

    An equal may not vouch for a peer's WeChat binding: it could bind its own phone to the
    peer's account and log in as them.
    """
    if actor is None:
        return False
    return actor.id == user.id or ROLE_RANK.get(actor.role, 0) > ROLE_RANK.get(user.role, 0)


def is_centre_reader(actor: User) -> bool:
    """Return whether the actor may open the centre's pages (admin, centre, expert)."""
    return actor.role in CENTRE_READERS


def require_centre_reader(actor: User, message: str = "只有区域质控中心可以查看全区比对") -> None:
    """Raise ``Forbidden`` unless the actor may open the centre's pages."""
    if not is_centre_reader(actor):
        raise Forbidden(message)


def can_write(actor: User | None) -> bool:
    """Return whether the actor may change data at all (False for the read-only expert)."""
    return actor is not None and actor.role not in READ_ONLY_ROLES


def require_write(actor: User) -> None:
    """Raise ``Forbidden`` for a read-only role (the expert comments, never edits data)."""
    if not can_write(actor):
        raise Forbidden("专家组成员只能查看数据，不能修改")


def read_only_allowed(view: F) -> F:
    """Mark a view that a read-only role may POST to (logout, its own profile, comments)."""
    setattr(view, READ_ONLY_OK, True)
    return view


def write_allowed(actor: User | None, method: str, view: Callable | None) -> bool:
    """Return whether ``actor`` may send a ``method`` request to ``view`` (the hook's rule)."""
    if method in SAFE_METHODS or can_write(actor):
        return True
    return view is not None and getattr(view, READ_ONLY_OK, False)


def sees_identities(actor: User) -> bool:
    """Return whether the actor sees *every* lab by name (the platform admin only).

    A centre or expert sees the labs of its subtree by name, which :func:`lab_label` and
    :func:`lab_ids_in_scope` decide per lab; labs of other trees it sees by anonymous code.
    """
    return actor.role == "admin"


def lab_label(actor: User, lab: Lab) -> str:
    """Return the lab's name for the actor: its name when in scope, else its anonymous code."""
    if sees_identities(actor) or can_access_lab(actor, lab.id):
        return lab.full_name
    return lab.anon_code
