"""A small judged world for the open-data tests (no tests here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from qcwx import models as m
from qcwx.catalog.codes import apply_shipped_codes
from qcwx.extensions import db
from qcwx.iqc import services as iqc
from qcwx.iqc.models import CorrectiveAction
from qcwx.timeutil import local_today
from tests.integration.test_ingest_support import set_limits

MEANS, SDS = {1: 5.0, 2: 15.0}, {1: 0.2, 2: 0.5}
# (system key, day of the previous month, level 1 value, level 2 value)
RUNS = [("a", 1, "5.10", "15.20"), ("a", 2, "4.90", "14.80"), ("a", 3, "5.90", "15.10"),
        ("b", 1, "5.05", "15.40"), ("b", 4, "4.95", "14.60"), ("c", 2, "5.00", "15.00")]
SECRETS = {"display": "张三丰检验师", "openid": "oQCWX-openid-7f3a9c", "phone": "13912345678",
           "cause": "试剂瓶被打翻后重新配制", "serial": "SN-UNIQUE-99812"}


@dataclass
class Judged:
    world: object
    start: date
    end: date
    run_ids: dict


def previous_month(today: date) -> tuple[date, date]:
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def build(world) -> Judged:
    """Codes, limits and six runs (one rejected) in the previous month; identities to hide."""
    apply_shipped_codes()
    start, end = previous_month(local_today())
    for key in ("a", "b", "c"):
        set_limits(world.systems[key], world.users["admin"], MEANS, SDS, start)
    techs = {"a": world.users["technician"], "b": world.users["technician_b"],
             "c": world.users["technician_c"]}
    run_ids = {}
    for key, day, v1, v2 in RUNS:
        verdict = iqc.submit_run(techs[key], test_system_id=world.systems[key].id,
                                 run_date=start + timedelta(days=day - 1),
                                 values={"1": v1, "2": v2}, notify=False)
        run_ids[(key, day)] = verdict.run_id
    tech = world.users["technician"]
    tech.display_name, tech.wechat_openid, tech.phone = (SECRETS["display"], SECRETS["openid"],
                                                         SECRETS["phone"])
    world.systems["a"].instrument.serial = SECRETS["serial"]
    action = db.session.query(CorrectiveAction).filter_by(run_id=run_ids[("a", 3)]).one()
    action.description = SECRETS["cause"]
    db.session.commit()
    return Judged(world, start, end, run_ids)


def identities() -> list[str]:
    """Return every name, user, openid, serial and free-text value in the database."""
    values: list[str] = []
    for model, cols in ((m.Hospital, ("name",)), (m.Lab, ("name",)), (m.Region, ("name",)),
                        (m.User, ("username", "display_name", "wechat_openid", "mp_openid",
                                  "phone")),
                        (m.Instrument, ("serial", "name")),
                        (m.ControlLimit, ("reason",)), (m.RuleSet, ("reason",)),
                        (CorrectiveAction, ("description", "action_taken", "rerun_result",
                                            "patient_impact", "sign_comment"))):
        for row in db.session.query(model):
            values += [str(getattr(row, c)) for c in cols if getattr(row, c)]
    return sorted(set(values))
