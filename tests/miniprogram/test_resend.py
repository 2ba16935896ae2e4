"""A phone resends a run whose answer it lost: the stored duplicate, never a second run or a 409.

The mini-program resends with the same ``client_id`` (unique per lab) after a dropped answer.
Whatever the first run's verdict, and even when midnight passed in between and the body
carries no date (the server dates it today, in the lab's time zone), the resend is the
same submission: 200 with the stored verdict. Only other values, or another date the
client sent itself, make it a reused client id (409).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import miniprogram_api.views as mp_views
from qcwx.iqc.models import QcRun
from qcwx.timeutil import local_today
from tests.fixtures.alerts import MEAN, SD
from tests.miniprogram.conftest import API


def body(ts_id, client_id: str, z1: float = 0.2, **extra) -> dict:
    return {"test_system_id": ts_id, "client_id": client_id,
            "values": {"1": f"{MEAN[1] + z1 * SD[1]:.3f}", "2": f"{MEAN[2]:.3f}"}, **extra}


def runs_of(session, ts_id) -> int:
    return session.query(QcRun).filter_by(test_system_id=ts_id).count()


@pytest.mark.parametrize("z1, status", [(0.2, "accept"), (2.5, "warning"), (3.6, "reject")])
def test_a_resent_run_is_the_stored_duplicate_whatever_its_verdict(
        client, session, bound, mp_login, z1, status):
    headers = mp_login(bound.users["technician"])
    ts_id = bound.systems["a"].id
    sent = body(ts_id, f"again-{status}", z1)
    first = client.post(f"{API}/runs", json=sent, headers=headers)
    assert first.status_code == 201 and first.get_json()["status"] == status
    stored = runs_of(session, ts_id)
    session.expunge_all()
    again = client.post(f"{API}/runs", json=sent, headers=headers)
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["duplicate"] is True
    assert again.get_json()["run_id"] == first.get_json()["run_id"]
    assert again.get_json()["status"] == status
    assert runs_of(session, ts_id) == stored


def test_a_dateless_run_resent_after_midnight_is_the_duplicate_of_the_day_it_was_stored(
        client, session, bound, mp_login, monkeypatch):
    """The load bench found it: resends across 00:00 Asia/Shanghai were answered 409, as if
    the phone had reused its client id for another run (the server's date was in the
    digest)."""
    headers = mp_login(bound.users["technician"])
    ts_id = bound.systems["a"].id
    today = local_today()
    sent = body(ts_id, "before-midnight")
    monkeypatch.setattr(mp_views, "local_today", lambda tz=None: today - timedelta(days=1))
    first = client.post(f"{API}/runs", json=sent, headers=headers)
    assert first.status_code == 201, first.get_json()
    monkeypatch.setattr(mp_views, "local_today", lambda tz=None: today)
    again = client.post(f"{API}/runs", json=sent, headers=headers)
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["run_id"] == first.get_json()["run_id"]
    assert again.get_json()["run_date"] == first.get_json()["run_date"] == str(
        today - timedelta(days=1))


def test_a_client_id_sent_again_with_another_date_of_its_own_is_a_conflict(
        client, bound, mp_login):
    headers = mp_login(bound.users["technician"])
    ts_id = bound.systems["a"].id
    today = local_today()
    first = client.post(f"{API}/runs", headers=headers, json=body(
        ts_id, "dated", run_date=str(today - timedelta(days=1))))
    assert first.status_code == 201, first.get_json()
    other = client.post(f"{API}/runs", headers=headers, json=body(
        ts_id, "dated", run_date=str(today)))
    assert other.status_code == 409
    assert other.get_json()["field"] == "client_id"
