"""App factory, configuration, health, migrations and login."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from qcwx import create_app
from qcwx.config import build_config
from qcwx.errors import ConfigError
from qcwx.extensions import db
from tests.factories import PASSWORD


def test_healthz_reports_database_and_eager_broker(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["broker"] == "eager"
    assert body["version"]


def test_healthz_is_503_when_database_unreachable():
    app = create_app({"ENV": "testing", "DATABASE_URL": "mysql+pymysql://root@127.0.0.1:1/none",
                      "SECRET_KEY": "x"})
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json()["database"] == "down"


def test_healthz_reports_broker_down_when_redis_unreachable(app):
    bad = create_app({"ENV": "testing", "DATABASE_URL": app.config["DATABASE_URL"],
                      "SECRET_KEY": "x", "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert bad.test_client().get("/healthz").get_json()["broker"] == "down"


def test_healthz_pings_redis_on_one_pooled_connection_and_sees_it_come_back(app):
    """Issue 14: a new connection per answer cost ~2.5 ms of CPU (redis-py reads its package
    metadata per connection), two thirds of an answer; now one connection per process.

    The health client is found by a name of this test's own (redis-py takes ``client_name``
    from the URL), so other processes' connections to the shared server do not count.
    """
    from tests.fixtures.app import require_redis

    name = f"qcwx-health-test-{uuid.uuid4().hex[:12]}"
    url = f"redis://127.0.0.1:6379/13?client_name={name}"
    server = require_redis("redis://127.0.0.1:6379/13")
    live = create_app({"ENV": "testing", "DATABASE_URL": app.config["DATABASE_URL"],
                       "SECRET_KEY": "x", "REDIS_URL": url})
    client = live.test_client()

    def ours() -> set[str]:
        return {c["id"] for c in server.client_list() if c.get("name") == name}

    assert client.get("/healthz").get_json()["broker"] == "ok"
    first = ours()
    assert len(first) == 1
    assert all(client.get("/healthz").get_json()["broker"] == "ok" for _ in range(20))
    assert ours() == first  # 20 answers, the same connection (20 new ones before)
    server.client_kill_filter(_id=next(iter(first)))  # the server drops it
    assert client.get("/healthz").get_json()["broker"] == "ok"
    again = ours()
    assert len(again) == 1 and again != first


def test_models_and_migrations_agree(app):
    """No pending autogenerate diff: the migrations create exactly the models' schema."""
    with app.app_context(), db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, db.metadata)
    assert diff == []


def test_bad_database_url_is_one_clear_error():
    with pytest.raises(ConfigError, match="QCWX_DATABASE_URL"):
        build_config({"DATABASE_URL": "not a url"})
    with pytest.raises(ConfigError, match="QCWX_DATABASE_URL"):
        build_config({"DATABASE_URL": "nosuchdb://x/y"})


def test_wsgi_exits_with_one_line_naming_the_variable():
    env = {"QCWX_DATABASE_URL": "nonsense", "PATH": "/usr/bin:/bin"}
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", "import wsgi"], env=env, capture_output=True,
                          text=True, cwd=root)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and "QCWX_DATABASE_URL" in lines[0]


def test_production_refuses_to_start_without_secret_key():
    with pytest.raises(ConfigError, match="QCWX_SECRET_KEY"):
        build_config({"ENV": "production", "DATABASE_URL": "sqlite://"})


def test_production_refuses_to_start_without_its_public_base_url():
    with pytest.raises(ConfigError, match="QCWX_BASE_URL"):
        build_config({"ENV": "production", "DATABASE_URL": "sqlite://", "SECRET_KEY": "s",
                      "WECHAT_APPID": "wxreal", "WECHAT_SECRET": "s2", "WECHAT_TOKEN": "t"})


def test_production_does_not_point_wechat_at_the_fake():
    cfg = build_config({"ENV": "production", "DATABASE_URL": "sqlite://", "SECRET_KEY": "s" * 32,
                        "BASE_URL": "https://qc.example.cn", "WECHAT_AES_KEY": "a" * 43,
                        "REDIS_URL": "redis://127.0.0.1:6379/0",
                        "WECHAT_APPID": "wxreal", "WECHAT_SECRET": "s2", "WECHAT_TOKEN": "t"})
    assert cfg["WECHAT_API_BASE"] is None
    assert build_config({"DATABASE_URL": "sqlite://"})["WECHAT_API_BASE"].startswith("http://127.")


def test_login_with_wrong_password_shows_chinese_error(client, world):
    resp = client.post("/login", data={"username": world.users["technician"].username,
                                       "password": "wrong-password"})
    assert resp.status_code == 200
    assert "用户名或密码错误" in resp.get_data(as_text=True)


@pytest.mark.parametrize("target", ["/\nSet-Cookie:x=1", "/\t/evil.example.com",
                                    "/ /evil.example.com", "/\\evil.example.com",
                                    "//evil.example.com", "https://evil.example.com/x"])
def test_login_goes_home_instead_of_to_a_next_that_leaves_the_site_or_breaks_the_header(
        client, world, target):
    """Regression (issue 14, form fuzzer): a newline in ``next`` was a 500 (werkzeug refuses
    it in ``Location``), and a tab passed the check although a browser drops it from a URL,
    making ``/<tab>/evil`` the open redirect ``//evil``."""
    resp = client.post("/login", query_string={"next": target},
                       data={"username": world.users["technician"].username,
                             "password": PASSWORD})
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    kept = client.post("/login", query_string={"next": "/ts/1/chart?days=30"},
                       data={"username": world.users["technician"].username,
                             "password": PASSWORD})
    assert kept.headers["Location"] == "/ts/1/chart?days=30"


def test_login_form_reports_missing_fields_beside_the_field(client):
    html = client.post("/login", data={"username": "", "password": ""}).get_data(as_text=True)
    assert "请输入用户名" in html and "请输入密码" in html


def test_home_requires_login(client):
    resp = client.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_login_is_csrf_protected(app, session, world):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        resp = app.test_client().post("/login", data={
            "username": world.users["technician"].username, "password": PASSWORD})
        assert resp.status_code in (200, 400)
        assert "Location" not in resp.headers
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


@pytest.mark.parametrize("role, marker", [
    ("technician", "今日质控"), ("supervisor", "今日质控"), ("director", "全院检验科"),
    ("center", "区域质控中心"), ("admin", "平台管理员"),
])
def test_home_is_role_aware(world, login, role, marker):
    html = login(world.users[role]).get("/").get_data(as_text=True)
    assert marker in html
    assert world.users[role].display_name in html


def test_user_passwords_are_hashed(world):
    user = world.users["technician"]
    assert PASSWORD not in user.password_hash and user.check_password(PASSWORD)


def test_every_write_is_audited_and_the_log_is_append_only(session, world):
    from sqlalchemy import select

    from qcwx.audit.models import AuditLog

    lab = world.lab_a
    lab.name = "检验科（新）"
    session.flush()
    row = session.scalars(select(AuditLog).where(AuditLog.entity == "lab",
                                                 AuditLog.action == "update")).all()[-1]
    assert row.changes["name"] == ["检验科", "检验科（新）"]
    row.action = "tampered"
    with pytest.raises(PermissionError):
        session.flush()
    session.rollback()


def test_login_inside_wechat_goes_through_oauth_unless_password_is_asked(client):
    ua = {"User-Agent": "Mozilla/5.0 (iPhone) MicroMessenger/8.0.50"}
    resp = client.get("/login?next=/ts/1", headers=ua)
    assert resp.status_code == 302 and "/wechat/oauth/start" in resp.headers["Location"]
    assert client.get("/login?password=1", headers=ua).status_code == 200
