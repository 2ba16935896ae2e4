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
    # a district sees its own lots and the city's lot given to its labs, never a sibling's
    assert [d.id for d in queries.distributed_lots(centre1)] == [d1_lot.id, city_lot.id]
    assert [d.id for d in queries.distributed_lots(centre2)] == [city_lot.id]
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


def test_a_district_follows_its_labs_on_the_citys_lot_but_only_the_city_manages_it(
        world, tree, login):
    material = world.systems["a"].qc_lot.material
    city = world.users["center"]
    (_, lab1, centre1), (_, lab2, centre2) = tree["d1"], tree["d2"]
    city_lot = register(city, material, "CITY-2")
    services.assign_labs(city, city_lot.id, [lab1.id], today())
    db.session.commit()
    page = login(centre1).get(f"/lots/{city_lot.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and lab1.full_name in html
    assert 'id="registered-above"' in html and 'id="assign"' not in html
    assert queries.summary(city_lot, queries.visible_lab_ids(centre1))["none"] == 1
    with pytest.raises(UserError) as refused:  # managing stays with the registering centre
        services.assign_labs(centre1, city_lot.id, [lab1.id], today())
    assert refused.value.status == 403
    assert login(centre1).post(f"/lots/{city_lot.id}", data={
        "lab_ids": [str(lab1.id)]}).status_code == 403
    # the sibling district has no lab on it: the lot stays unknown to it
    assert login(centre2).get(f"/lots/{city_lot.id}").status_code == 404
    services.assign_labs(city, city_lot.id, [lab2.id], today())
    db.session.commit()
    sibling = login(centre2).get(f"/lots/{city_lot.id}").get_data(as_text=True)
    assert lab2.full_name in sibling and lab1.full_name not in sibling  # only its own labs
    assert lab1.full_name in login(city).get(f"/lots/{city_lot.id}").get_data(as_text=True)
