"""On the seeded demo region the injected biased lab stands out, and pages agree."""

from __future__ import annotations

import copy
from datetime import date
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.demo.seed import DEMO_PASSWORD, INJECTED, seed
from qcwx.extensions import db
from qcwx.orgs.scopes import region_subtree
from qcwx.peer import services
from tests.fixtures.app import rolled_back
from tests.peer.conftest import elements, level_blocks

DAYS = 60
END = date(2026, 11, 20)


@pytest.fixture(scope="module")
def demo(app):
    """Seed once per backend inside one outer transaction, rolled back after the module."""
    with rolled_back(app):
        seed(days=DAYS, end=END)
        db.session.commit()  # releases the savepoint: requests' rollbacks keep the data
        client = app.test_client()
        yield SimpleNamespace(client=client, injected=copy.deepcopy(INJECTED))


def login(client, username: str) -> None:
    client.post("/logout")
    resp = client.post("/login", data={"username": username, "password": DEMO_PASSWORD})
    assert resp.status_code == 302


def matrix_sdi(client) -> dict[tuple[int, int, int], str]:
    html = client.get("/peer/centre", query_string={"metric": "sdi", "period": "cum"}
                      ).get_data(as_text=True)
    out = {}
    for e in elements(html, "pe-cellv"):
        lab = int(next(a for a in e["ancestors"] if "data-lab" in a)["data-lab"])
        analyte = int(next(a for a in e["ancestors"] if "data-analyte" in a)["data-analyte"])
        out.setdefault((lab, analyte, int(e["attrs"]["data-level"])), []).append(
            e["attrs"]["data-value"])
    return out


def test_injected_biased_lab_is_unacceptable_on_its_page(demo):
    event = demo.injected["bias_1"]
    ts = db.session.get(m.TestSystem, event["test_system_id"])
    login(demo.client, "center")
    html = demo.client.get(f"/peer/labs/{ts.lab_id}", query_string={"period": "cum"}
                           ).get_data(as_text=True)
    blocks = {k: b for k, b in level_blocks(html).items() if k[0] == ts.id}
    assert len(blocks) == 2
    for block in blocks.values():
        assert abs(float(block["attrs"]["data-sdi"])) >= 2, block["attrs"]
        assert "不可接受" in block["text"]


def test_centre_matrix_matches_the_lab_pages(demo):
    login(demo.client, "center")
    cells = matrix_sdi(demo.client)
    event = demo.injected["bias_1"]
    biased = db.session.get(m.TestSystem, event["test_system_id"])
    labs = [biased.lab_id] + list(db.session.scalars(
        select(m.Lab.id).join(m.Hospital).where(m.Hospital.region_id.in_(region_subtree(
            select(m.Region.id).where(m.Region.code == "DEMO").scalar_subquery())))
        .order_by(m.Lab.id).limit(4)))
    checked = 0
    for lab_id in labs:
        html = demo.client.get(f"/peer/labs/{lab_id}", query_string={"period": "cum"}
                               ).get_data(as_text=True)
        for (ts_id, level_id), block in level_blocks(html).items():
            ts = db.session.get(m.TestSystem, ts_id)
            index = db.session.get(m.QcLevel, level_id).level_index
            assert block["attrs"]["data-sdi"] in cells[(lab_id, ts.analyte_id, index)]
            checked += 1
    assert checked >= 40


def test_cache_rebuild_keeps_every_number(demo):
    login(demo.client, "tech")
    lab = db.session.scalar(select(m.User.lab_id).where(m.User.username == "tech"))
    url = f"/peer/labs/{lab}"
    before = level_blocks(demo.client.get(url, query_string={"period": "cum"})
                          .get_data(as_text=True))
    services.rebuild_cache()
    db.session.commit()
    after = level_blocks(demo.client.get(url, query_string={"period": "cum"})
                         .get_data(as_text=True))
    assert before.keys() == after.keys() and len(before) >= 20
    for key, block in before.items():
        for attr in ("data-n", "data-group-level", "data-grade"):
            assert after[key]["attrs"][attr] == block["attrs"][attr]
        for attr in ("data-mean", "data-group-mean", "data-sdi", "data-cvr"):
            if block["attrs"][attr]:
                assert float(after[key]["attrs"][attr]) == pytest.approx(
                    float(block["attrs"][attr]), rel=1e-9, abs=1e-12)
