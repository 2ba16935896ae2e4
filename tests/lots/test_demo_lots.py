"""The demo region holds a unified-lot change-over in progress at the supervisor's lab."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from qcwx.demo.lots import CHANGEOVER_ANALYTES, OTHER_LABS, PARALLEL_DAYS, seed_lot_changeover
from qcwx.demo.seed import seed
from qcwx.extensions import db
from qcwx.iqc.models import QcResult, QcRun
from qcwx.lots import queries
from qcwx.lots.models import LotChangeover
from qcwx.orgs.models import User
from tests.fixtures.app import rolled_back

END = date(2026, 11, 20)


def test_demo_seeds_one_lab_half_way_through_its_parallel_runs(app):
    with rolled_back(app):
        seed(days=14, end=END)
        assert "2 个检测系统平行检测中" in seed_lot_changeover(END)
        centre = db.session.scalar(select(User).where(User.username == "center"))
        sup = db.session.scalar(select(User).where(User.username == "supervisor"))
        (dlot,) = queries.distributed_lots(centre)
        assert dlot.qc_lot.lot_number == "26450" and len(dlot.assignments) == 1 + OTHER_LABS
        statuses = {ls.lab.id: ls for ls in queries.lab_statuses(dlot)}
        mine = statuses.pop(sup.lab_id)
        assert (mine.status, mine.label) == ("parallel", f"平行检测中（{PARALLEL_DAYS}/20）")
        assert {ls.status for ls in statuses.values()} == {"none"}
        cos = db.session.scalars(select(LotChangeover)).all()
        assert sorted(c.old_test_system.analyte.code for c in cos) == sorted(CHANGEOVER_ANALYTES)
        for co in cos:  # old and new lot overlap: both entered every parallel day
            new_days = db.session.scalar(select(func.count(func.distinct(QcRun.run_date))).where(
                QcRun.test_system_id == co.new_test_system_id))
            old_days = db.session.scalar(select(func.count(func.distinct(QcRun.run_date))).where(
                QcRun.test_system_id == co.old_test_system_id, QcRun.run_date >= co.parallel_start))
            assert new_days == old_days == PARALLEL_DAYS
            assert co.old_test_system.active and co.new_test_system.active
            assert co.switch_date is None
        assert db.session.scalar(select(func.count()).select_from(QcResult).join(QcRun).where(
            QcRun.test_system_id.in_([c.new_test_system_id for c in cos]))) == \
            PARALLEL_DAYS * 2 * len(cos)
