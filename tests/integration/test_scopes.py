"""Scope rules: each role against a lab inside and outside its scope."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from qcwx.catalog.models import TestSystem
from qcwx.orgs.scopes import can_access_lab, lab_label, scoped

# role -> labs (of the world) it may see
EXPECTED = {
    "admin": {"a", "b", "c"},
    "center": {"a", "b"},
    "center2": {"c"},
    "director": {"a"},
    "supervisor": {"a"},
    "technician": {"a"},
    "technician_b": {"b"},
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_scope_query_returns_exactly_the_labs_in_scope(session, world, role):
    actor = world.users[role]
    ids = set(session.scalars(scoped(select(TestSystem.lab_id), actor, TestSystem.lab_id)))
    labs = {"a": world.lab_a.id, "b": world.lab_b.id, "c": world.lab_c.id}
    assert ids == {labs[k] for k in EXPECTED[role]}
    for key, lab_id in labs.items():
        assert can_access_lab(actor, lab_id) is (key in EXPECTED[role])


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_entry_page_is_404_outside_scope(world, login, role):
    client = login(world.users[role])
    for key, ts in world.systems.items():
        status = client.get(f"/ts/{ts.id}").status_code
        assert status == (200 if key in EXPECTED[role] else 404), (role, key)


def test_other_labs_appear_by_anonymous_code_below_center(world):
    tech = world.users["technician"]
    assert lab_label(tech, world.lab_b) == world.lab_b.anon_code
    assert lab_label(tech, world.lab_a) == world.lab_a.full_name
    assert lab_label(world.users["center"], world.lab_b) == world.lab_b.full_name


def test_a_lab_users_scope_check_costs_no_statement(world, session):
    """Issue 14: every submission asks whether the technician may reach the test system."""
    from sqlalchemy import event

    actors = [world.users[role] for role in ("technician", "supervisor")]
    labs = (world.lab_a.id, world.lab_b.id)
    assert all(a.role and a.lab_id for a in actors)  # loaded before counting
    seen = []
    engine = session.get_bind()
    listener = lambda *a, **k: seen.append(1)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        for actor in actors:
            assert can_access_lab(actor, labs[0]) is True
            assert can_access_lab(actor, labs[1]) is False
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert seen == []
    # an id that is not an int still gets the database's answer
    assert can_access_lab(world.users["technician"], str(world.lab_a.id)) is True
    assert can_access_lab(world.users["technician"], "x") is False
