"""Real processes for the end-to-end tests: a Celery worker, the web app, a private Redis.

Each test starts what it needs as child processes and stops them (by pid) in teardown: the
worker (``celery -A workers.celery_app worker -P solo``), the app (``tests.e2e.live_server``)
and, for the outage test, its own ``redis-server`` on a free port — the shared Redis on 6379
is never stopped. The fake WeChat runs in a thread of this process; the worker reaches it over
HTTP like it would reach WeChat. The database is a fresh MariaDB database ``<test db>_e2e``.

Redis and MariaDB not answering is a skip on a laptop and a failure in CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from qcwx.config import PROJECT_ROOT
from qcwx.extensions import db
from qcwx.wechat.fake_server import FakeWeChatServer
from tests.fixtures.alerts import derived_mariadb_url
from tests.fixtures.app import IN_CI, make_test_app, mariadb_reachable, recreate_mariadb_database
from tests.fixtures.wechat import APPID_SECRETS, WECHAT_SETTINGS

SHARED_REDIS = os.environ.get("QCWX_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
CELERY = str(Path(sys.executable).with_name("celery"))
BASE_URL = "http://qc.e2e.example"
TEMPLATE = "E2E_QC_ALERT"
START_TIMEOUT = 60


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: real Celery worker + Redis + MariaDB + fake WeChat over HTTP "
                   "(skipped locally when Redis/MariaDB do not answer; required in CI)")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"end-to-end test needs {reason} in CI")
    pytest.skip(f"end-to-end test skipped: {reason}")


def require_services() -> None:
    """Skip (locally) or fail (CI) unless MariaDB, the shared Redis and redis-server exist."""
    reason = mariadb_reachable()
    if reason:
        _unavailable(f"MariaDB ({reason})")
    try:
        redis_lib.Redis.from_url(SHARED_REDIS, socket_connect_timeout=2).ping()
    except redis_lib.RedisError as exc:
        _unavailable(f"Redis at {SHARED_REDIS} ({exc})")
    if not shutil.which("redis-server"):
        _unavailable("the redis-server binary")


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Proc:
    """A child process with its log file; ``stop`` ends it by pid (SIGTERM, then SIGKILL)."""

    name: str
    popen: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


@dataclass
class Stack:
    """Start and stop the child processes of one test; everything started is stopped."""

    tmp: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(args, cwd=PROJECT_ROOT, env=env or self.env, stdout=handle,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        handle.close()
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def redis(self, port: int) -> Proc:
        """Start a private, non-persistent redis-server on ``port`` and wait until it answers."""
        proc = self.spawn("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                    "--save", "", "--appendonly", "no"])
        client = redis_lib.Redis(port=port, socket_connect_timeout=1)
        wait_for(lambda: _pings(client), 20, f"redis-server on port {port}")
        return proc

    def worker(self) -> Proc:
        """Start a Celery worker (solo pool) and wait for its ``ready`` line."""
        proc = self.spawn("worker", [CELERY, "-A", "workers.celery_app", "worker", "-P", "solo",
                                     "-l", "info", "-n", f"e2e-{os.getpid()}-{time.time_ns()}@%h",
                                     "--without-gossip", "--without-mingle"])
        wait_for(lambda: _alive(proc) and " ready." in proc.text(), START_TIMEOUT,
                 "the Celery worker to be ready")
        return proc

    def web(self) -> tuple[Proc, str]:
        """Start the app (``tests.e2e.live_server``); return it and its base URL."""
        port = free_port()
        proc = self.spawn("web", [sys.executable, "-m", "tests.e2e.live_server", str(port)])
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _alive(proc) and _answers(f"{url}/api/mp/v1/openapi.json"),
                 START_TIMEOUT, "the web app")
        return proc, url

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        for proc in self.procs:  # captured output: pytest shows it when the test failed
            print(f"----- {proc.name} (exit {proc.popen.returncode}) {proc.log.name}\n"
                  f"{proc.text()[-4000:]}")


def _alive(proc: Proc) -> bool:
    if proc.popen.poll() is not None:
        raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n"
                             f"{proc.text()[-3000:]}")
    return True


def _pings(client: redis_lib.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def fake_server():
    """The fake WeChat in a thread of this process, reachable over HTTP by the children."""
    server = FakeWeChatServer(APPID_SECRETS).start(port=0)
    yield server
    server.stop()


@pytest.fixture
def fake(fake_server):
    """The fake WeChat, reset: no messages, calls or tokens from an earlier test."""
    fake_server.reset()
    return fake_server


def base_env(database_url: str, fake_url: str, redis_url: str | None) -> dict[str, str]:
    """Return the environment of the web and worker processes (configured as in production)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QCWX_")}
    settings = {**WECHAT_SETTINGS, "BASE_URL": BASE_URL, "WECHAT_TEMPLATE_ALERT": TEMPLATE}
    env.update({f"QCWX_{k}": str(v) for k, v in settings.items()})
    env.update({"QCWX_ENV": "development", "QCWX_DATABASE_URL": database_url,
                "QCWX_WECHAT_API_BASE": fake_url, "QCWX_SECRET_KEY": "e2e-secret-" + "x" * 24,
                "QCWX_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
    if redis_url:
        env["QCWX_REDIS_URL"] = redis_url
    return env


@pytest.fixture
def stack(tmp_path):
    """Collects the test's child processes and stops them all in teardown."""
    holder = Stack(tmp_path, {})
    yield holder
    holder.stop_all()


@dataclass
class Lab:
    """The seeded lab: ids and openids the tests need."""

    database_url: str
    ts_id: int
    supervisor_openid: str
    technician_mp_openid: str
    supervisor_id: int


def seed(database_url: str) -> Lab:
    """Create the schema and one lab with a bound supervisor and technician, limits set."""
    from qcwx.iqc import targets
    from qcwx.timeutil import local_today
    from tests import factories

    app = make_test_app(database_url)
    with app.app_context():
        region = factories.region()
        lab = factories.lab(factories.hospital(region))
        sup = factories.user("supervisor", lab_=lab, name="李主管")
        tech = factories.user("technician", lab_=lab, name="王技师")
        sup.wechat_openid = "oE2eSupervisor00000000000000"
        tech.mp_openid = "oE2eTechnicianMp000000000000"
        ts = factories.test_system(lab, factories.analyte(), factories.qc_lot(2))
        for lv in ts.levels:
            mean, sd = (5.0, 0.2) if lv.level_index == 1 else (15.0, 0.5)
            targets.set_control_limit(sup, ts, lv, mean=mean, sd=sd, kind="fixed",
                                      effective_from=local_today() - timedelta(days=30),
                                      reason="说明书靶值")
        db.session.commit()
        seeded = Lab(database_url, ts.id, sup.wechat_openid, tech.mp_openid, sup.id)
        db.session.remove()
        db.engine.dispose()
    return seeded


@pytest.fixture
def mariadb_lab(request):
    """A fresh MariaDB database (``<test db>_e2e``) seeded with one lab."""
    require_services()
    url = derived_mariadb_url("e2e")
    recreate_mariadb_database(url)
    return seed(url)


@pytest.fixture
def sqlite_lab(tmp_path):
    """A fresh SQLite file seeded with one lab (the embedded default database)."""
    return seed(f"sqlite:///{tmp_path / 'embedded.sqlite3'}")
