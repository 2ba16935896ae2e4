"""Regression tests for the defects the permission matrix found (issue 14)."""

from __future__ import annotations

import pytest

from qcwx.audit.services import set_actor
from qcwx.extensions import db
from qcwx.opendata.models import ResearchApiKey
from qcwx.opendata.services import create_research_key


@pytest.fixture(autouse=True)
def _no_audit_actor():
    """A request's audit actor outlives it in this thread; rolled-back users break FKs."""
    set_actor(None)
    yield
    set_actor(None)


def test_revoking_another_regions_research_key_is_a_404_and_revokes_nothing(world, login):
    """It answered the same redirect as a done revocation (the refusal was swallowed)."""
    key, _ = create_research_key(world.users["center2"], "外区研究")
    db.session.commit()
    client = login(world.users["center"])
    resp = client.post(f"/opendata/keys/{key.id}/revoke")
    assert resp.status_code == 404
    db.session.expire_all()
    assert db.session.get(ResearchApiKey, key.id).revoked_at is None
    own = login(world.users["center2"]).post(f"/opendata/keys/{key.id}/revoke")
    assert own.status_code == 302
    db.session.expire_all()
    assert db.session.get(ResearchApiKey, key.id).revoked_at is not None
