"""One write path for every channel: per-lab client ids, route-set channels, per-row errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select

from qcwx.errors import Conflict
from qcwx.extensions import db
from qcwx.ingest import services as ingest
from qcwx.iqc import services, targets
from qcwx.iqc.models import QcResult, QcRun, Submission
from qcwx.timeutil import local_today
from tests import factories as f


@pytest.fixture
def limits(world):
    start = local_today() - timedelta(days=60)
    for key in ("a", "b"):
        system = world.systems[key]
        for lv in system.levels:
            targets.set_control_limit(world.users["admin"], system, lv, mean=5.0 * lv.level_index,
                                      sd=0.2 * lv.level_index, kind="fixed",
                                      effective_from=start, reason="说明书靶值")
    return start


def _submit(world, who, key, day, client_id, v1="5.0"):
    return services.submit_run(world.users[who], test_system_id=world.systems[key].id,
                               run_date=local_today() - timedelta(days=day),
                               values={"1": v1, "2": "10.0"}, client_id=client_id)


def test_two_labs_may_use_the_same_client_ids(session, world, limits):
    """A LIS numbering runs 1, 2, 3 is not refused because another lab used 1, 2, 3."""
    for n in (1, 2, 3):
        _submit(world, "technician", "a", n, str(n))
    for n in (1, 2, 3):
        verdict = _submit(world, "technician_b", "b", n, str(n))
        assert not verdict.duplicate and verdict.test_system_id == world.systems["b"].id
    assert session.scalar(select(func.count()).select_from(Submission)
                          .where(Submission.client_id == "1")) == 2


def test_a_client_id_is_still_idempotent_and_guarded_within_its_lab(session, world, limits):
    first = _submit(world, "technician", "a", 1, "run-7")
    again = _submit(world, "technician", "a", 1, "run-7")
    assert again.duplicate and again.run_id == first.run_id
    with pytest.raises(Conflict) as exc:
        _submit(world, "technician", "a", 2, "run-7", v1="5.1")
    assert exc.value.status == 409 and exc.value.field == "client_id"


def test_the_json_api_stores_a_labs_ids_already_used_by_another_lab(session, world, limits):
    """Used to be refused inside an HTTP 200, so the uploader dropped the results."""
    _submit(world, "technician", "a", 1, "1")
    day = (local_today() - timedelta(days=1)).isoformat()
    body = [{"client_id": "1", "test_code": "GLU", "level": "1", "value": "5.02",
             "run_date": day}]
    report = ingest.import_json(world.users["technician_b"], world.lab_b, {"items": body})
    assert report.counts["stored"] == 1 and report.counts["error"] == 0


def test_the_phone_form_cannot_choose_its_channel(client, login, world, limits):
    login(world.users["technician"])
    ts = world.systems["a"]
    day = (local_today() - timedelta(days=2)).isoformat()
    resp = client.post(f"/ts/{ts.id}", data={"run_date": day, "run_no": "1", "level_1": "5.0",
                                             "level_2": "10.0", "client_id": "c-api",
                                             "channel": "api"})
    assert resp.status_code == 302
    resp = client.post(f"/api/ts/{ts.id}/runs?channel=scan", json={
        "run_date": day, "run_no": "2", "values": {"1": "5.1"}, "client_id": "c-scan",
        "channel": "mp"})
    assert resp.status_code == 201
    got = dict(db.session.execute(select(Submission.client_id, Submission.channel)
                                  .where(Submission.client_id.in_(["c-api", "c-scan"]))).all())
    assert got == {"c-api": "h5", "c-scan": "scan"}


def test_prepare_runs_reports_each_row_and_store_runs_writes_only_good_ones(session, world,
                                                                            limits):
    ts = world.systems["a"]
    day = local_today() - timedelta(days=3)
    rows = [services.RunInput(ts.id, day, {"1": "5.0", "2": "10.0"}, 1, "ok-1"),
            services.RunInput(ts.id, day, {"1": "abc"}, 2, "bad-value"),
            services.RunInput(ts.id, day, {"1": "5.0"}, 1, "clash"),  # run 1 level 1 taken above
            services.RunInput(world.systems["c"].id, day, {"1": "5.0"}, 1, "other-region"),
            services.RunInput(ts.id, day + timedelta(days=5), {"1": "5.0"}, 1, "future"),
            services.RunInput(ts.id, day, {"1": "5.0", "2": "10.0"}, 1, "ok-1")]  # resent
    prepared = services.prepare_runs(world.users["technician"], "upload", rows)
    fields = [(p.error.field if p.error else None) for p in prepared]
    assert fields == [None, "level_1", "values", "test_system_id", "run_date", None]
    assert prepared[2].error.status == 409 and prepared[3].error.status == 404
    services.store_runs(world.users["technician"], "upload", prepared)
    assert prepared[0].run_id and prepared[5].duplicate and prepared[5].run_id == prepared[0].run_id
    assert session.scalar(select(func.count()).select_from(QcResult).join(QcRun)
                          .where(QcRun.test_system_id == ts.id)) == 2


def test_a_range_with_only_an_upper_bound_gives_a_message_not_a_500(session, world):
    system = f.test_system(world.lab_a, f.analyte("HI", "只有上限", "U/L", 0, None, 100),
                           f.qc_lot(1))
    prepared = services.prepare_runs(world.users["technician"], "h5", [services.RunInput(
        system.id, local_today(), {"1": "150"})])
    assert prepared[0].error.field == "level_1" and "合理范围" in prepared[0].error.message


def test_migration_moves_client_id_uniqueness_to_the_lab(tmp_path):
    """Down to the old schema and up again: each stored submission gets its run's lab."""
    from tests.fixtures.app import make_test_app

    other = make_test_app(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    with other.app_context():
        world = f.build_world()
        ts = world.systems["b"]
        for lv in ts.levels:
            targets.set_control_limit(world.users["admin"], ts, lv, mean=5.0, sd=0.2,
                                      kind="fixed", effective_from=local_today(), reason="x")
        services.submit_run(world.users["technician_b"], test_system_id=ts.id,
                            run_date=local_today(), values={"1": "5.0"}, client_id="1")
        db.session.commit()
        lab_id = ts.lab_id
        db.session.remove()
        downgrade(revision="3f5fe13a95dc")
        assert "lab_id" not in {c["name"] for c in sa.inspect(db.engine).get_columns("submission")}
        upgrade()
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT lab_id, client_id FROM submission")).all() == [
                (lab_id, "1")]
        uniques = sa.inspect(db.engine).get_unique_constraints("submission")
        assert [sorted(u["column_names"]) for u in uniques] == [["client_id", "lab_id"]]
        db.engine.dispose()
