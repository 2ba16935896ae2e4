"""A rejecting run submitted in the mini-program reaches the supervisor's WeChat, exactly once.

Real processes throughout: the web app and a Celery worker (``-P solo``) as children of this
test, a real Redis broker, MariaDB, and the fake WeChat answering over HTTP. The outage test
stops its own private Redis during the submission: the run and its outbox row commit anyway
(201), and once Redis is back the sweeper — the task beat runs every minute, sent here
directly so the test does not wait for beat's first tick — delivers the message.
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis as redis_lib
import requests
from celery import Celery
from sqlalchemy import create_engine, text

from bench.stack import free_port, pings, wait_for
from tests.e2e.conftest import BASE_URL, SHARED_REDIS, TEMPLATE, base_env

pytestmark = pytest.mark.e2e
DEADLINE = 30  # seconds from submission to the message on the supervisor's phone
API = "/api/mp/v1"


def login(url: str, fake, openid: str) -> dict:
    """Log in as the mini-program does: wx.login code → POST /login → JWT."""
    resp = requests.post(f"{url}{API}/login", json={"code": fake.mint_mp_code(openid)},
                         timeout=10)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def submit_reject(url: str, headers: dict, ts_id: int) -> requests.Response:
    """Submit a run with level 1 at +3.5 SD (1-3s: reject)."""
    return requests.post(f"{url}{API}/runs", headers=headers, timeout=30, json={
        "test_system_id": ts_id, "client_id": f"e2e-{uuid.uuid4().hex}",
        "values": {"1": "5.70", "2": "15.05"}})


def messages_to(fake, openid: str) -> list[dict]:
    return [m for m in fake.messages if m["kind"] == "template" and m["touser"] == openid]


def outbox_rows(database_url: str) -> list[tuple]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT kind, status, attempts FROM outbox_message ORDER BY id")).all()
    finally:
        engine.dispose()


def assert_alert_fields(msg: dict, run_id: int) -> None:
    assert msg["template_id"] == TEMPLATE
    assert msg["url"] == f"{BASE_URL}/runs/{run_id}"
    data = {k: v["value"] for k, v in msg["data"].items()}
    assert "葡萄糖质控失控" in data["first"]
    assert data["keyword1"] == "葡萄糖（GLU，mmol/L）"
    assert data["keyword2"].startswith("水平1 5.70（Z=+3.50）")
    assert "1-3s" in data["keyword3"]


def report(label: str, **timings: float) -> None:
    print(f"\n[e2e] {label}: " + ", ".join(f"{k}={v:.2f}s" for k, v in timings.items()))


def test_reject_in_the_mini_program_reaches_the_supervisor_through_the_worker(
        stack, fake, mariadb_lab):
    redis_lib.Redis.from_url(SHARED_REDIS).flushdb()  # this test's own DB: no stale tasks
    stack.env = base_env(mariadb_lab.database_url, fake.url, SHARED_REDIS)
    started = time.monotonic()
    worker = stack.worker()
    _, url = stack.web()
    ready = time.monotonic() - started
    headers = login(url, fake, mariadb_lab.technician_mp_openid)

    t0 = time.monotonic()
    resp = submit_reject(url, headers, mariadb_lab.ts_id)
    answered = time.monotonic() - t0
    assert resp.status_code == 201, resp.text
    assert resp.json()["status"] == "reject"
    [msg] = wait_for(lambda: messages_to(fake, mariadb_lab.supervisor_openid), DEADLINE,
                     "the template message to the supervisor")
    delivered = time.monotonic() - t0
    assert_alert_fields(msg, resp.json()["run_id"])
    time.sleep(2)  # a duplicate would show up now
    assert len(messages_to(fake, mariadb_lab.supervisor_openid)) == 1
    assert outbox_rows(mariadb_lab.database_url) == [("run_reject", "sent", 1)]
    assert "qcwx.alerts.dispatch" in worker.text() and "succeeded" in worker.text()
    report("worker path", processes_ready=ready, submit_answered=answered,
           message_delivered=delivered)


def test_alert_committed_while_redis_is_down_arrives_once_redis_is_back(
        stack, fake, mariadb_lab):
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    broker = stack.redis(port)
    stack.env = base_env(mariadb_lab.database_url, fake.url, redis_url)
    worker = stack.worker()
    _, url = stack.web()
    headers = login(url, fake, mariadb_lab.technician_mp_openid)

    broker.stop()
    assert not pings(redis_lib.Redis(port=port, socket_connect_timeout=1))
    t0 = time.monotonic()
    resp = submit_reject(url, headers, mariadb_lab.ts_id)
    answered = time.monotonic() - t0
    assert resp.status_code == 201, resp.text  # the submission does not depend on Redis
    assert outbox_rows(mariadb_lab.database_url) == [("run_reject", "pending", 0)]
    time.sleep(2)
    assert messages_to(fake, mariadb_lab.supervisor_openid) == []

    t1 = time.monotonic()
    stack.redis(port)  # back, empty (non-persistent): the queued task never existed
    if worker.popen.poll() is not None:  # the worker is expected to reconnect by itself
        worker = stack.worker()
    # Not the process's current Celery app: ``shared_task`` proxies (render_pdf, …) follow
    # the current app, and later tests in this process would publish to this dead broker.
    client = Celery("e2e-client", broker=redis_url, set_as_current=False)
    try:
        def swept():
            found = messages_to(fake, mariadb_lab.supervisor_openid)
            if not found:
                client.send_task("qcwx.alerts.sweep")  # beat's every-minute task, sent now
            return found

        [msg] = wait_for(swept, DEADLINE, "the swept message", interval=3)
    finally:
        client.close()
    delivered = time.monotonic() - t1
    assert_alert_fields(msg, resp.json()["run_id"])
    time.sleep(3)
    assert len(messages_to(fake, mariadb_lab.supervisor_openid)) == 1
    assert outbox_rows(mariadb_lab.database_url) == [("run_reject", "sent", 1)]
    assert "qcwx.alerts.sweep" in worker.text()
    report("Redis outage", submit_answered_with_redis_down=answered,
           delivered_after_redis_restart=delivered)


def test_embedded_default_without_redis_delivers_within_the_request(stack, fake, sqlite_lab):
    """No Redis, no worker, SQLite: tasks run eagerly in the web process after the commit."""
    stack.env = base_env(sqlite_lab.database_url, fake.url, None)
    _, url = stack.web()
    headers = login(url, fake, sqlite_lab.technician_mp_openid)
    t0 = time.monotonic()
    resp = submit_reject(url, headers, sqlite_lab.ts_id)
    answered = time.monotonic() - t0
    assert resp.status_code == 201, resp.text
    [msg] = messages_to(fake, sqlite_lab.supervisor_openid)  # already there: no polling
    assert_alert_fields(msg, resp.json()["run_id"])
    assert outbox_rows(sqlite_lab.database_url) == [("run_reject", "sent", 1)]
    report("embedded default", submit_and_deliver=answered)
