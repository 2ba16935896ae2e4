"""An alert that reaches nobody is a visible failure: its own status, shown where it matters."""

from __future__ import annotations

from datetime import timedelta

from qcwx.alerts.models import OutboxMessage
from qcwx.iqc import services as iqc
from qcwx.iqc import targets
from qcwx.timeutil import local_today


def reject_in_lab_b(world, session):
    ts = world.systems["b"]
    for lv in ts.levels:
        targets.set_control_limit(world.users["admin"], ts, lv, mean=5.0, sd=0.2, kind="fixed",
                                  effective_from=local_today() - timedelta(days=5), reason="靶值")
    iqc.submit_run(world.users["technician_b"], test_system_id=ts.id, run_date=local_today(),
                   values={"1": "9.9"})
    session.commit()


def test_the_centre_sees_which_labs_cannot_be_alerted(session, world, fake_wechat, login):
    reject_in_lab_b(world, session)
    [outbox] = session.query(OutboxMessage).all()
    assert outbox.status == "unreachable" and fake_wechat.messages == []
    client = login(world.users["center"])
    home = client.get("/").get_data(as_text=True)
    assert "1 个实验室没有绑定微信的质控主管，失控提醒无法送达" in home
    assert world.lab_b.full_name in home
    failed = client.get("/alerts/failed").get_data(as_text=True)
    assert 'id="unreachable"' in failed and world.lab_b.full_name in failed


def test_a_director_outside_the_lab_sees_nothing_of_it(session, world, fake_wechat, login):
    reject_in_lab_b(world, session)  # lab B is hospital 2; the director is hospital 1's
    home = login(world.users["director"]).get("/").get_data(as_text=True)
    assert "失控提醒无法送达" not in home


def test_an_unbound_supervisor_is_told_to_bind(session, world, login):
    client = login(world.users["supervisor"])
    assert 'id="unbound-banner"' in client.get("/").get_data(as_text=True)
    world.users["supervisor"].wechat_openid = "oSupervisorBound0000000000001"
    session.commit()
    assert 'id="unbound-banner"' not in client.get("/").get_data(as_text=True)
