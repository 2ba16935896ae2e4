"""Unified lots follow the region tree: a centre manages lots in its subtree, never a sibling's."""

from __future__ import annotations

from datetime import timedelta

import pytest

from qcwx import models as m
from qcwx.errors import UserError
from qcwx.extensions import db
from qcwx.lots import queries, services
from tests.factories import hospital, lab, user
from tests.lots.support import today


@pytest.fixture
def tree(world, session):
    """Region 1 (the city) gets two districts, each with a lab and a centre user."""
    out = {}
    for key in ("d1", "d2"):
        region = m.Region(code=f"T-{key}", name=f"{key}区", parent_id=world.region1.id,
                          level="district")
        db.session.add(region)
        db.session.flush()
        out[key] = (region, lab(hospital(region)), user("center", region_=region))
    session.commit()
    return out


def register(centre, material, number):
    return services.register_lot(centre, region_id=None, material_id=material.id,
                                 lot_number=number, expiry=today() + timedelta(days=200),
                                 levels="水平1，水平2")


def test_city_centre_assigns_district_labs_and_sees_district_lots(world, tree, login):
    material = world.systems["a"].qc_lot.material
    city = world.users["center"]
    (r1, lab1, centre1), (_, lab2, centre2) = tree["d1"], tree["d2"]
    city_lot = register(city, material, "CITY-1")
    assert {a.lab_id for a in services.assign_labs(city, city_lot.id, [lab1.id, lab2.id],
                                                   today())} == {lab1.id, lab2.id}
    d1_lot = register(centre1, material, "D1-1")
    assert d1_lot.region_id == r1.id
    assert {d.id for d in queries.distributed_lots(city)} == {city_lot.id, d1_lot.id}
    assert [d.id for d in queries.distributed_lots(centre1)] == [d1_lot.id]
    assert queries.distributed_lots(centre2) == []
    assert [lb.id for lb in queries.assignable_labs(centre1, d1_lot)] == [lab1.id]
    with pytest.raises(UserError) as sibling:
        services.assign_labs(centre1, d1_lot.id, [lab2.id], today())
    assert sibling.value.status == 404
    db.session.commit()
    client = login(centre2)
    assert client.get(f"/lots/{d1_lot.id}").status_code == 404
    assert client.post(f"/lots/{d1_lot.id}", data={"lab_ids": [str(lab2.id)]}).status_code == 404
    assert "D1-1" not in client.get("/lots/").get_data(as_text=True)
    assert "D1-1" in login(city).get("/lots/").get_data(as_text=True)
