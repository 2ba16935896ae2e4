"""Concurrent writers against a real threaded server, on SQLite and MariaDB: never a 500.

Eight threads start together (a barrier) and each uses its own connection and database
session, as eight phones would. A unique-key race must end as the duplicate answer (200
with the stored result) or 409; a lock wait is retried and at worst answered 503 with
``Retry-After``.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from miniprogram_api.auth import issue_token
from qcwx.extensions import db
from qcwx.iqc.models import ControlLimit, QcResult, QcRun, RuleSet, Submission
from qcwx.timeutil import local_today
from tests.factories import PASSWORD, build_world
from tests.fixtures.app import (
    derived_mariadb_url,
    make_test_app,
    recreate_mariadb_database,
    require_mariadb,
)
from tests.integration.test_ingest_support import set_limits

THREADS = 8


@pytest.fixture(scope="module", params=["sqlite", "mariadb"])
def served(request, tmp_path_factory):
    """A migrated app (no test transaction: real commits) served on a free port."""
    if request.param == "mariadb":
        require_mariadb()
        url = derived_mariadb_url("concurrency")
        recreate_mariadb_database(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('conc') / 'conc.sqlite3'}"
    app = make_test_app(url)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with app.app_context():
        world = build_world()
        set_limits(world.systems["a"], world.users["supervisor"], {1: 5.0, 2: 15.0},
                   {1: 0.2, 2: 0.5}, local_today() - timedelta(days=30))
        tech = world.users["technician"]
        tech.mp_openid = f"oMpConc{tech.id:020d}"
        db.session.commit()
        info = {"ts": world.systems["a"].id, "token": issue_token(tech)["token"],
                "supervisor": world.users["supervisor"].username}
        db.session.remove()
    yield app, f"http://127.0.0.1:{server.server_port}", info
    server.shutdown()
    thread.join(5)
    with app.app_context():
        db.engine.dispose()


def _together(calls) -> list[requests.Response]:
    """Run the callables at the same moment, one thread each; return their responses."""
    barrier = threading.Barrier(len(calls))
    out: list = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            out[i] = call()
        except Exception as exc:  # noqa: BLE001 - reported in the assertion below
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, requests.Response) for r in out), out
    return out


def _no_5xx_but_503(responses) -> None:
    for r in responses:
        assert r.status_code < 500 or r.status_code == 503, (r.status_code, r.text[:300])
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) > 0


def _count(app, model, *where) -> int:
    with app.app_context():
        try:
            return db.session.scalar(select(func.count()).select_from(model).where(*where))
        finally:
            db.session.remove()


def test_eight_phones_sending_the_same_run_store_it_once(served):
    app, base, info = served
    body = {"test_system_id": info["ts"], "client_id": "conc-same-1",
            "run_date": (local_today() - timedelta(days=1)).isoformat(),
            "values": {"1": "5.05", "2": "15.1"}}
    headers = {"Authorization": f"Bearer {info['token']}"}
    responses = _together([lambda: requests.post(f"{base}/api/mp/v1/runs", json=body,
                                                 headers=headers, timeout=60)] * THREADS)
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409, 503}, statuses
    _no_5xx_but_503(responses)
    stored = next(r.json() for r in responses if r.status_code == 201)
    for r in responses:
        if r.status_code == 200:
            assert r.json()["duplicate"] is True and r.json()["run_id"] == stored["run_id"]
    assert _count(app, Submission, Submission.client_id == "conc-same-1") == 1
    assert _count(app, QcResult, QcResult.run_id == stored["run_id"]) == 2


def test_different_ids_for_the_same_run_store_one_and_refuse_the_rest(served):
    app, base, info = served
    day = (local_today() - timedelta(days=2)).isoformat()
    headers = {"Authorization": f"Bearer {info['token']}"}

    def call(i):
        body = {"test_system_id": info["ts"], "client_id": f"conc-diff-{i}", "run_date": day,
                "run_no": 1, "values": {"1": "5.0", "2": "15.0"}}
        return lambda: requests.post(f"{base}/api/mp/v1/runs", json=body, headers=headers,
                                     timeout=60)

    responses = _together([call(i) for i in range(THREADS)])
    _no_5xx_but_503(responses)
    statuses = [r.status_code for r in responses]
    assert statuses.count(201) == 1 and set(statuses) <= {201, 409, 503}, statuses
    with app.app_context():
        runs = db.session.scalar(select(func.count()).select_from(QcRun).where(
            QcRun.test_system_id == info["ts"], QcRun.run_date == local_today() - timedelta(2)))
        db.session.remove()
    assert runs == 1


def _logged_in(base, username) -> requests.Session:
    s = requests.Session()
    resp = s.post(f"{base}/login", data={"username": username, "password": PASSWORD},
                  allow_redirects=False, timeout=30)
    assert resp.status_code == 302
    return s


def _save_together(clients, url: str, form: dict) -> int:
    """Post ``form`` from every client at once; return how many saved (302)."""
    responses = _together([(lambda c=c: c.post(url, data=form, allow_redirects=False,
                                               timeout=60)) for c in clients])
    _no_5xx_but_503(responses)
    saved = sum(r.status_code == 302 for r in responses)
    assert saved >= 1 and all(r.status_code in (302, 409, 503) for r in responses)
    return saved


def test_concurrent_limit_and_rule_saves_never_500_and_keep_versions_unique(served):
    app, base, info = served
    clients = [_logged_in(base, info["supervisor"]) for _ in range(THREADS)]
    with app.app_context():
        level_id = db.session.scalar(select(ControlLimit.qc_level_id).where(
            ControlLimit.test_system_id == info["ts"]).limit(1))
        db.session.remove()
    before = _count(app, ControlLimit, ControlLimit.qc_level_id == level_id)
    form = {"qc_level_id": str(level_id), "mode": "fixed", "target_mean": "5.0",
            "target_sd": "0.2", "effective_from": local_today().isoformat(), "reason": "并发"}
    saved = _save_together(clients, f"{base}/ts/{info['ts']}/limits", form)
    with app.app_context():
        versions = db.session.scalars(select(ControlLimit.version).where(
            ControlLimit.qc_level_id == level_id)).all()
        db.session.remove()
    assert len(versions) == before + saved and len(set(versions)) == len(versions)

    rules = {"preset": "default", "reason": "并发修改"}
    saved = _save_together(clients, f"{base}/ts/{info['ts']}/rules", rules)
    with app.app_context():
        versions = db.session.scalars(select(RuleSet.version).where(
            RuleSet.test_system_id == info["ts"])).all()
        db.session.remove()
    assert sorted(versions) == list(range(1, saved + 1))


def test_concurrent_corrections_of_one_result_keep_one_current_version(served):
    app, base, info = served
    headers = {"Authorization": f"Bearer {info['token']}"}
    body = {"test_system_id": info["ts"], "client_id": "conc-corr-1",
            "run_date": (local_today() - timedelta(days=3)).isoformat(),
            "values": {"1": "5.0", "2": "15.0"}}
    run_id = requests.post(f"{base}/api/mp/v1/runs", json=body, headers=headers,
                           timeout=60).json()["run_id"]
    with app.app_context():
        result_id = db.session.scalar(select(QcResult.id).where(QcResult.run_id == run_id)
                                      .order_by(QcResult.id).limit(1))
        db.session.remove()
    clients = [_logged_in(base, info["supervisor"]) for _ in range(THREADS)]
    responses = _together([
        (lambda c=c, i=i: c.post(f"{base}/results/{result_id}/correct",
                                 data={"value": f"5.{i + 1}", "reason": "抄写错误"},
                                 allow_redirects=False, timeout=60))
        for i, c in enumerate(clients)])
    _no_5xx_but_503(responses)
    assert all(r.status_code in (302, 409, 503) for r in responses), [
        r.status_code for r in responses]
    with app.app_context():
        level = db.session.get(QcResult, result_id).qc_level_id
        current = db.session.scalars(select(QcResult.version).where(
            QcResult.run_id == run_id, QcResult.qc_level_id == level,
            QcResult.is_current)).all()
        db.session.remove()
    assert len(current) == 1
