"""Reads for the admin overview page, limited to the actor's region."""

from __future__ import annotations

from sqlalchemy import func, select

from qcwx.admin.scoping import scope_clause
from qcwx.catalog.models import Instrument, TestSystem
from qcwx.extensions import db
from qcwx.orgs.models import Hospital, Lab, User

COUNTED = {
    "hospitals": Hospital,
    "labs": Lab,
    "users": User,
    "instruments": Instrument,
    "test_systems": TestSystem,
}


def region_counts(actor: User) -> dict[str, int]:
    """Return how many hospitals, labs, users, instruments and test systems the actor maintains."""
    counts = {
        key: db.session.scalar(
            select(func.count()).select_from(model).where(scope_clause(actor, model))
        ) or 0
        for key, model in COUNTED.items()
    }
    counts["active_test_systems"] = db.session.scalar(
        select(func.count()).select_from(TestSystem)
        .where(scope_clause(actor, TestSystem), TestSystem.active.is_(True))
    ) or 0
    return counts
