"""The world the permission matrix probes: a region tree, every role, one object of each kind.

A city region with two district regions (lab A in district A, lab B in district B) and a
second, separate region (lab Z). Every object kind a URL rule takes by id exists twice: for
lab A (in scope of the lab-A actors, the city and district-A centres, the expert, the admin)
and for lab Z (in scope of the second region's actors only). Built with ``tests.factories``
and plain rows, so the module's world costs well under a second.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import date, timedelta

from qcwx import models as m
from qcwx.analytics.models import InstrumentComparison
from qcwx.catalog.models import CatalogueProposal
from qcwx.extensions import db
from qcwx.ingest.apikeys import create_key
from qcwx.labels.services import make_token
from qcwx.opendata.services import create_research_key
from qcwx.reports import regional_publish as regional
from qcwx.reports import services as reports
from qcwx.timeutil import local_today, utcnow
from tests import factories as f

# Actor name -> (role, where): where names the region / hospital / lab the user belongs to.
ACTORS = {
    "admin": ("admin", None),
    "center_city": ("center", "city"),
    "center_a": ("center", "district_a"),
    "center_b": ("center", "district_b"),
    "expert": ("expert", "city"),
    "director": ("director", "hosp_a"),
    "supervisor": ("supervisor", "lab_a"),
    "technician": ("technician", "lab_a"),
    "supervisor_b": ("supervisor", "lab_b"),
    "center2": ("center", "region2"),
    "supervisor2": ("supervisor", "lab_z"),
}


@dataclass
class Objects:
    """Ids of one object of every kind, all belonging to one lab (and its region)."""

    ids: dict[str, int] = field(default_factory=dict)
    strings: dict[str, str] = field(default_factory=dict)


@dataclass
class MatrixWorld:
    """The regions, labs, users and the in-scope (lab A) / out-of-scope (lab Z) objects."""

    regions: dict[str, m.Region]
    labs: dict[str, m.Lab]
    users: dict[str, m.User]
    inside: Objects
    outside: Objects
    share_tokens: dict[str, str]  # share links by state, and lab A's API / research keys
    secrets_out: tuple[str, ...] = ()
    usernames: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)


def _tree() -> tuple[dict[str, m.Region], dict[str, m.Hospital], dict[str, m.Lab]]:
    city = f.region("市级区域")
    district_a, district_b = f.region("甲区"), f.region("乙区")
    for child in (district_a, district_b):
        child.parent_id, child.level = city.id, "district"
    region2 = f.region("外市区域")
    hosp_a = f.hospital(district_a, "甲区人民医院")
    hosp_b = f.hospital(district_b, "乙区中医医院")
    hosp_z = f.hospital(region2, "外市远方医院")
    labs = {"lab_a": f.lab(hosp_a, "甲检验科"), "lab_b": f.lab(hosp_b, "乙检验科"),
            "lab_z": f.lab(hosp_z, "远方检验科")}
    regions = {"city": city, "district_a": district_a, "district_b": district_b,
               "region2": region2}
    return regions, {"hosp_a": hosp_a, "hosp_b": hosp_b, "hosp_z": hosp_z}, labs


def _user(role: str, where: str | None, regions, hospitals, labs) -> m.User:
    return f.user(role, region_=regions.get(where), hospital_=hospitals.get(where),
                  lab_=labs.get(where))


def _run(ts: m.TestSystem, day: date, run_no: int, actor: m.User) -> m.QcRun:
    run = m.QcRun(test_system_id=ts.id, run_date=day, run_no=run_no, status="reject")
    db.session.add(run)
    db.session.flush()
    for level in ts.levels:
        db.session.add(m.QcResult(run_id=run.id, qc_level_id=level.id, value_text="5.00",
                                  value=5.0, entered_by_id=actor.id))
    db.session.flush()
    return run


def _objects(lab: m.Lab, region: m.Region, owner: m.User, centre: m.User, expert: m.User,
             analyte: m.Analyte) -> tuple[Objects, dict[str, str]]:
    """Create one object of every kind for ``lab``; return their ids and share tokens."""
    lot = f.qc_lot(2)
    ts = f.test_system(lab, analyte, lot)
    new_ts = f.test_system(lab, analyte, f.qc_lot(2))
    today = local_today()
    run = _run(ts, today - timedelta(days=1), 1, owner)
    result = db.session.scalars(db.select(m.QcResult).where(m.QcResult.run_id == run.id)).first()
    action = m.CorrectiveAction(run_id=run.id)
    outbox = m.OutboxMessage(kind="qc_reject", payload={}, dedupe_key=f"mx-{run.id}",
                             lab_id=lab.id, run_id=run.id, status="sent")
    db.session.add_all([action, outbox])
    db.session.flush()
    delivery = m.AlertDelivery(outbox_id=outbox.id, channel="wechat_template",
                               recipient=f"o{owner.id:027d}", dedupe_key=f"mx-d-{outbox.id}",
                               user_id=owner.id, status="failed")
    month = (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    published = reports.publish_evaluation(lab, month, today)
    link = reports.create_link(None, "evaluation", lab, {"month": month}, ttl_days=30,
                               title="评测报告", published=published)
    revoked = reports.create_link(None, "dynamic", lab, {}, title="动态报告")
    revoked.link.revoked_at = utcnow()
    expired = reports.create_link(None, "dynamic", lab, {}, title="动态报告")
    expired.link.expires_at = utcnow() - timedelta(days=1)
    comment = m.ExpertComment(published_id=published.id, author_id=expert.id, body="点评",
                              lab_id=lab.id)
    override = m.RecognitionOverride(region_id=region.id, lab_id=lab.id, analyte_id=analyte.id,
                                     month=month, computed_verdict="fail", verdict="pass",
                                     reason="现场核查合格", created_by_id=centre.id)
    dlot = m.DistributedLot(region_id=region.id, qc_lot_id=f.qc_lot(2).id)
    db.session.add_all([delivery, comment, override, dlot])
    db.session.flush()
    assignment = m.LotAssignment(distributed_lot_id=dlot.id, lab_id=lab.id, from_date=today)
    db.session.add(assignment)
    db.session.flush()
    changeover = m.LotChangeover(assignment_id=assignment.id, old_test_system_id=ts.id,
                                 new_test_system_id=new_ts.id, parallel_start=today)
    export = m.OpenDataExport(region_id=region.id, period_start=today - timedelta(days=40),
                              period_end=today - timedelta(days=10))
    api_key, api_raw = create_key(centre, lab.id, "接口")
    research_key, research_raw = create_research_key(centre, "研究")
    code_map = m.TestCodeMapping(lab_id=lab.id, source_code="GLU", test_system_id=ts.id)
    column_map = m.ColumnMapping(lab_id=lab.id, name="列映射", columns={})
    grouping = m.SavedGrouping(region_id=region.id, name="方案", filters={})
    invite = m.WechatInvite(code=secrets.token_hex(4).upper(), user_id=owner.id,
                            created_by_id=centre.id, expires_at=utcnow() + timedelta(days=7))
    proposal = CatalogueProposal(table_name="reagent", action="create", row_id=None,
                                 proposed_values={"maker": "某厂", "name": "试剂"},
                                 reason="新增", region_id=region.id, proposed_by_id=centre.id)
    comparison = InstrumentComparison(
        lab_id=lab.id, analyte_id=analyte.id, source="qc", x_label="甲仪器", y_label="乙仪器",
        allowable_bias=5.0, decision_levels=[5.0], unit=analyte.unit, x_ts_id=ts.id,
        y_ts_id=new_ts.id, pairs=[[2 + i / 2, (2 + i / 2) * 1.01 + (-1) ** i / 50]
                                  for i in range(20)])
    db.session.add_all([changeover, export, code_map, column_map, grouping, invite, proposal,
                        comparison])
    db.session.flush()
    region_report = regional.publish_region(
        region, regional.parse_period(month, None, None, today), today).item
    objects = Objects(
        ids={"ts": ts.id, "run": run.id, "result": result.id, "action": action.id,
             "alert": outbox.id, "delivery": delivery.id, "published": published.id,
             "link": link.link.id, "comment": comment.id, "override": override.id,
             "lot": dlot.id, "assignment": assignment.id, "changeover": changeover.id,
             "export": export.id, "api_key": api_key.id, "research_key": research_key.id,
             "code_mapping": code_map.id, "column_mapping": column_map.id,
             "grouping": grouping.id, "invite": invite.id, "proposal": proposal.id,
             "lab": lab.id, "hospital": lab.hospital_id, "user": owner.id,
             "comparison": comparison.id, "region_report": region_report.id},
        strings={"token": link.token, "label": make_token(ts), "kind": "dynamic",
                 "fmt": "xlsx", "digest": "0" * 64, "mapping_kind": "code"},
    )
    tokens = {"valid": link.token, "revoked": revoked.token, "expired": expired.token,
              "api_key": api_raw, "research_key": research_raw}
    return objects, tokens


def build_matrix_world() -> MatrixWorld:
    """Build the tree, one user per actor, and the in-scope / out-of-scope objects."""
    regions, hospitals, labs = _tree()
    users = {name: _user(role, where, regions, hospitals, labs)
             for name, (role, where) in ACTORS.items()}
    glu = f.analyte()
    inside, tokens = _objects(labs["lab_a"], regions["district_a"], users["supervisor"],
                              users["center_a"], users["expert"], glu)
    outside, tokens_out = _objects(labs["lab_z"], regions["region2"], users["supervisor2"],
                                   users["center2"], users["expert"], glu)
    users["technician"].mp_openid = f"oMatrix{users['technician'].id:021d}"
    tokens["tampered"] = tokens["valid"][:-2] + ("AA" if not tokens["valid"].endswith("AA")
                                                 else "BB")
    lab_z, hosp_z = labs["lab_z"], hospitals["hosp_z"]
    lab_z.code, hosp_z.code = "ZLAB-FAR-7", "ZHOSP-FAR-7"  # distinctive: searched in bodies
    secrets_out = (lab_z.name, lab_z.code, hosp_z.name, hosp_z.code, regions["region2"].name)
    return MatrixWorld(regions, labs, users, inside, outside, tokens, secrets_out,
                       {name: u.username for name, u in users.items()},
                       {name: u.id for name, u in users.items()})
