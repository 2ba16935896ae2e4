"""A mini-program submission reads its user and its test system in one statement (issue 14).

The bearer check and the scope check stay where they were and decide as before; the view
only has both rows read together (``miniprogram_api.views._preload_run``). Counted through
the HTTP endpoint, so the view's part of the request is in the count.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from qcwx import followups
from tests.fixtures.alerts import MEAN, SD
from tests.integration.test_submit_cost import ACCEPT_STATEMENTS, REJECT_STATEMENTS
from tests.integration.test_submit_cost import counted as count_statements
from tests.miniprogram.conftest import API


@contextmanager
def counted():
    """Yield the request's statements, one line each (the test harness's savepoints left out:
    its commit releases one)."""
    seen: list[str] = []
    with count_statements() as raw:
        yield seen
    seen += [" ".join(s.split()) for s in raw if "SAVEPOINT" not in s]


def body(ts_id, client_id: str, z1: float = 0.2) -> dict:
    return {"test_system_id": ts_id, "client_id": client_id,
            "values": {"1": f"{MEAN[1] + z1 * SD[1]:.3f}", "2": f"{MEAN[2]:.3f}"}}


@pytest.mark.parametrize("z1, status", [(0.2, "accept"), (2.5, "warning"), (3.6, "reject")])
def test_a_run_reads_user_and_test_system_in_one_statement_and_nothing_later(
        client, session, bound, mp_login, monkeypatch, z1, status):
    """Two reads, whatever the verdict: the preload (only the columns a submission uses) and
    the store checks. A column the preload left out and the path then read would show here
    as a third SELECT (a lazy load)."""
    batches = []  # the after-commit work is queued, not run: the request's own reads counted
    monkeypatch.setattr(followups, "publish", batches.append)
    headers = mp_login(bound.users["technician"])
    ts_id = bound.systems["a"].id
    session.expunge_all()  # as a request of another process: nothing in the identity map
    with counted() as seen:
        resp = client.post(f"{API}/runs", json=body(ts_id, f"reads-{status}", z1),
                           headers=headers)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["status"] == status
    selects = [s for s in seen if s.startswith("SELECT")]
    assert len(selects) == 2, "\n".join(seen)
    assert " FROM user LEFT OUTER JOIN test_system " in selects[0]
    assert " AS part, submission.run_id AS i0" in selects[1]  # bulk.store_state's union
    dialect = session.get_bind().dialect.name
    # one statement less than the service alone counts from a loaded user (the user's read)
    expected = {"accept": ACCEPT_STATEMENTS, "reject": REJECT_STATEMENTS[dialect]}
    if status in expected:
        assert len(seen) == expected[status] - 1, f"{len(seen)}:\n" + "\n".join(seen)
    assert not [s for s in seen if s.startswith("UPDATE qc_run")]  # inserted with its verdict
    assert len(batches) == 1


@pytest.mark.parametrize("which", ["b", "c"])
def test_a_test_system_outside_scope_is_still_404_after_being_read(client, bound, mp_login,
                                                                   which):
    headers = mp_login(bound.users["technician"])
    resp = client.post(f"{API}/runs", json=body(bound.systems[which].id, f"out-{which}"),
                       headers=headers)
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "检测系统不存在或无权访问", "field": "test_system_id"}


@pytest.mark.parametrize("ts_id", [2**31 - 1, 0, -3, "12a", 10**30, None, [1], {"a": 1}])
def test_an_unknown_or_junk_test_system_id_answers_as_before(client, bound, mp_login, ts_id):
    headers = mp_login(bound.users["technician"])
    resp = client.post(f"{API}/runs", json=body(ts_id, "junk-id"), headers=headers)
    assert resp.status_code in (400, 404)
    assert resp.get_json()["field"] == "test_system_id"


def test_a_deactivated_user_is_refused_though_read_with_the_test_system(client, session, bound,
                                                                         mp_login):
    tech = bound.users["technician"]
    headers = mp_login(tech)
    tech.active = False
    session.commit()
    resp = client.post(f"{API}/runs", json=body(bound.systems["a"].id, "gone"),
                       headers=headers)
    assert resp.status_code == 401 and "停用" in resp.get_json()["error"]


def test_a_bad_token_is_refused_before_anything_is_read(client, bound):
    sent = body(bound.systems["a"].id, "anon")
    with counted() as seen:
        resp = client.post(f"{API}/runs", json=sent,
                           headers={"Authorization": "Bearer not-a-token"})
    assert resp.status_code == 401 and seen == []


def test_a_body_that_is_no_object_reads_the_user_alone_then_answers_400(client, session,
                                                                        bound, mp_login):
    headers = mp_login(bound.users["technician"])
    session.expunge_all()
    with counted() as seen:
        resp = client.post(f"{API}/runs", data="[1, 2]", headers=headers,
                           content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["field"] == "body"
    assert len(seen) == 1 and "test_system" not in seen[0]
