"""Region scope of the admin pages, built on ``orgs.scopes`` so it lives inside the SQL.

A platform admin sees everything; a centre sees the hospitals, labs, users, instruments and
test systems of its own region and every region below it (the region tree, through
:func:`qcwx.orgs.scopes.region_subtree`). Shared catalogue entries (analytes, reagents,
lots, …) have no scope: every centre reads them, only a platform admin changes them (a centre
proposes).
Every list query, count query, single-object load and relationship dropdown of the admin goes
through :func:`scope_clause`, so rows outside the region are never loaded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false, or_, select, true

from qcwx.catalog.models import (
    Analyte,
    Calibrator,
    Instrument,
    Method,
    QcLevel,
    QcLot,
    QcMaterial,
    QualitySpec,
    Reagent,
    TestSystem,
)
from qcwx.extensions import db
from qcwx.orgs.models import Hospital, Lab, Region, User
from qcwx.orgs.scopes import in_scope, lab_ids_in_scope, region_ids_in_scope, region_in_scope

# Catalogue rows every region shares: read by all, changed by the platform admin only.
SHARED_MODELS = (Analyte, QualitySpec, Reagent, Calibrator, QcMaterial, Method, QcLot, QcLevel)


def hospital_ids_in_region(actor: User) -> Any:
    """Return a SELECT of the hospital ids of the actor's region subtree (all for an admin)."""
    stmt = select(Hospital.id)
    if actor.role == "admin":
        return stmt
    return stmt.where(Hospital.region_id.in_(region_ids_in_scope(actor)))


def scope_clause(actor: User, model: type) -> ColumnElement[bool]:
    """Return the WHERE clause limiting ``model`` to what ``actor`` may maintain."""
    if actor.role == "admin":
        return true()
    if actor.role != "center":
        return false()
    if model is Region:
        return Region.id.in_(region_ids_in_scope(actor))
    if model is Hospital:
        return Hospital.region_id.in_(region_ids_in_scope(actor))
    if model is Lab:
        return in_scope(actor, Lab.id)
    if model is User:
        return or_(
            User.region_id.in_(region_ids_in_scope(actor)),
            User.hospital_id.in_(hospital_ids_in_region(actor)),
            User.lab_id.in_(lab_ids_in_scope(actor)),
        )
    if model is Instrument:
        return in_scope(actor, Instrument.lab_id)
    if model is TestSystem:
        return in_scope(actor, TestSystem.lab_id)
    return true()  # shared catalogue


def scoped_query(actor: User, model: type) -> Any:
    """Return a legacy ``Query`` of ``model`` limited to the actor's scope (for Flask-Admin)."""
    return db.session.query(model).filter(scope_clause(actor, model))


def region_of(obj: Any) -> int | None:
    """Return the region id an org/catalogue object belongs to (None for shared ones)."""
    if isinstance(obj, Region):
        return obj.id
    if isinstance(obj, Hospital):
        return obj.region.id if obj.region is not None else obj.region_id
    if isinstance(obj, Lab):
        return region_of(obj.hospital) if obj.hospital is not None else None
    if isinstance(obj, (Instrument, TestSystem)):
        return region_of(obj.lab) if obj.lab is not None else None
    return None


def may_maintain(actor: User, obj: Any) -> bool:
    """Return whether ``actor`` may create or change ``obj``.

    A centre maintains the rows of its own region and the regions below it; shared catalogue
    rows only a platform admin changes; regions themselves only the platform admin creates.
    """
    if actor.role == "admin":
        return True
    if actor.role != "center" or isinstance(obj, SHARED_MODELS):
        return False
    if isinstance(obj, (Region, Hospital, Lab, Instrument, TestSystem)):
        return region_in_scope(actor, region_of(obj))
    return False
