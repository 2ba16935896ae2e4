"""Who may read the mutual-recognition list, change thresholds and override verdicts.

Every endpoint × role (anonymous, technician, supervisor, director, centre, admin, another
region's centre), inside and outside scope: lab roles read their own rows only, nothing is
changed below the centre (403), and another region's objects answer 404.
"""

from __future__ import annotations

import io
import re

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from qcwx.extensions import db
from qcwx.qcstats.recognition import IMPROVE
from qcwx.recognition import services
from qcwx.recognition.models import RecognitionOverride
from tests import factories as f
from tests.peer.conftest import LABS

CRITERIA_FORM = {"min_submission_pct": "85", "min_in_control_pct": "95", "window_months": "3",
                 "passing_grades": ["A", "B"], "sdi_limit": "2", "cvr_limit": "1.5"}
ROLES = ("anonymous", "technician", "supervisor", "director", "center", "admin", "center2")
LAB_ROLES = ("technician", "supervisor", "director")


def actor(w, role: str):
    if role == "anonymous":
        return None
    if role in ("technician", "supervisor"):
        return f.user(role, lab_=w.labs["r1"])
    if role == "director":
        return w.users["director_r1"]
    return w.users[role]


def listed_labs(html: str) -> set[int]:
    return {int(x) for x in re.findall(r'data-lab="(\d+)" data-analyte', html)}


def xlsx_hospitals(data: bytes) -> set[str]:
    book = load_workbook(io.BytesIO(data))
    sheet = book[book.sheetnames[1]]
    header = [c.value for c in sheet[1]]
    col = header.index("医院")
    return {r[col].value for r in sheet.iter_rows(min_row=2)}


@pytest.mark.parametrize("role", ROLES)
def test_every_endpoint_for_every_role(eval_world, client, login, role):
    w = eval_world
    user = actor(w, role)
    region1 = {w.labs[n].id for n in LABS}
    own = {"technician": {w.labs["r1"].id}, "supervisor": {w.labs["r1"].id},
           "director": {w.labs["r1"].id}, "center": region1, "admin": region1,
           "center2": {w.labs["x"].id}}
    target = w.labs["r1"]
    existing = RecognitionOverride(region_id=w.region.id, lab_id=target.id,
                                   analyte_id=w.glu.id, month=w.month,
                                   computed_verdict="推荐互认", verdict=IMPROVE,
                                   reason="预置改判，测试撤回权限")
    db.session.add(existing)
    db.session.commit()
    c = login(user) if user is not None else client
    month = f"month={w.month}"
    listing = c.get(f"/recognition/?{month}")
    export = c.get(f"/recognition/list.xlsx?{month}")
    criteria_page = c.get("/recognition/criteria")
    other_criteria = c.get(f"/recognition/criteria?region={w.region.id}")
    save = c.post("/recognition/criteria", data={**CRITERIA_FORM, "region": w.region.id})
    override = c.post("/recognition/overrides", data={
        "lab": target.id, "analyte_id": w.glu.id, "month": w.month, "verdict": "不合格",
        "reason": "权限测试的改判理由"})
    withdraw = c.post(f"/recognition/overrides/{existing.id}/withdraw",
                      data={"withdraw_reason": "权限测试的撤回理由"})
    responses = (listing, export, criteria_page, other_criteria, save, override, withdraw)
    if role == "anonymous":
        assert all(r.status_code in (302, 401) for r in responses)
        assert all("/login" in r.headers.get("Location", "/login") for r in responses)
        assert services.history(w.region.id) == []
        return
    assert listing.status_code == 200 and export.status_code == 200
    assert listed_labs(listing.get_data(as_text=True)) == own[role]
    names = {lab.hospital.name for lab in (w.labs[n] for n in [*LABS, "x"])
             if lab.id in own[role]}
    assert xlsx_hospitals(export.data) == names
    db.session.expire_all()
    still = db.session.get(RecognitionOverride, existing.id)
    if role in LAB_ROLES:
        assert [r.status_code for r in responses[2:]] == [403] * 5
        assert services.history(w.region.id) == [] and still.withdrawn_at is None
        assert db.session.scalar(select(RecognitionOverride.id).where(
            RecognitionOverride.verdict == "不合格")) is None
    elif role == "center2":
        assert criteria_page.status_code == 200
        assert [r.status_code for r in responses[3:]] == [404] * 4
        assert services.history(w.region.id) == [] and still.withdrawn_at is None
    else:
        assert criteria_page.status_code == other_criteria.status_code == 200
        assert save.status_code == 302 and len(services.history(w.region.id)) == 1
        assert override.status_code == 409  # the preset override is in force on that row
        assert withdraw.status_code == 302 and still.withdrawn_at is not None


def test_admin_reads_another_region_by_choice(eval_world, login):
    w = eval_world
    c = login(w.users["admin"])
    html = c.get(f"/recognition/?month={w.month}&region={w.region2.id}").get_data(as_text=True)
    assert listed_labs(html) == {w.labs["x"].id}
    assert c.get("/recognition/?region=999999").status_code == 404
    assert c.get("/recognition/criteria?region=999999").status_code == 404


def test_the_expert_group_reads_the_list_and_its_override_trail_but_changes_nothing(
        eval_world, login):
    w = eval_world
    existing = RecognitionOverride(region_id=w.region.id, lab_id=w.labs["r1"].id,
                                   analyte_id=w.glu.id, month=w.month,
                                   computed_verdict="推荐互认", verdict=IMPROVE,
                                   reason="专家组可见的改判记录")
    db.session.add(existing)
    db.session.commit()
    c = login(f.user("expert", region_=w.region))
    listing = c.get(f"/recognition/?month={w.month}")
    html = listing.get_data(as_text=True)
    assert listing.status_code == 200
    assert listed_labs(html) == {w.labs[n].id for n in LABS}
    assert f'data-override="{existing.id}"' in html and "专家组可见的改判记录" in html
    withdraw = c.post(f"/recognition/overrides/{existing.id}/withdraw",
                      data={"withdraw_reason": "专家不能撤回"})
    assert withdraw.status_code == 403
    db.session.expire_all()
    assert db.session.get(RecognitionOverride, existing.id).withdrawn_at is None
