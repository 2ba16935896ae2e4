"""The database unreachable: 503 with ``Retry-After`` and a Chinese message, never a 500.

Why: ``bench/fault_mariadb.py`` restarts MariaDB under load; the phones (and the uploader)
must be told to come back later, and ``/healthz`` answered 503 without saying when. These
tests point an app at a closed port instead of stopping a server.
"""

from __future__ import annotations

from qcwx import create_app
from qcwx.orgs.models import User

DOWN = "mysql+pymysql://root@127.0.0.1:1/none"


def _down_app():
    return create_app({"ENV": "testing", "DATABASE_URL": DOWN, "SECRET_KEY": "x" * 32})


def test_healthz_with_the_database_down_says_when_to_retry():
    resp = _down_app().test_client().get("/healthz")
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) > 0


def test_a_submission_with_the_database_down_is_503_with_retry_after():
    from miniprogram_api.auth import issue_token

    app = _down_app()
    with app.app_context():
        token = issue_token(User(id=1, mp_openid="oDown0000000000000000000000"))["token"]
    resp = app.test_client().post("/api/mp/v1/runs", headers={"Authorization": f"Bearer {token}"},
                                  json={"test_system_id": 1, "client_id": "c1",
                                        "values": {"1": "5.0"}})
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) > 0
    assert resp.get_json()["error"] == "数据库暂时不可用，请稍后重试"
