"""Fixtures for alert tests: the app pointed at the fake WeChat, and a world with bindings.

The app runs eagerly (no Redis), on SQLite and on MariaDB, like every integration test; its
MariaDB database is this directory's own (``<test db>_alerts``) so it never drops a database
another directory's session-scoped app still uses. WeChat is the other engineer's fake server
over real HTTP (``tests.wechat.conftest``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import make_url

from qcwx.extensions import db
from qcwx.iqc import services, targets
from qcwx.timeutil import local_today
from tests.conftest import MARIADB_URL, make_test_app, recreate_mariadb_database, require_mariadb
from tests.wechat.conftest import WECHAT_SETTINGS, fake_wechat, fake_wechat_server  # noqa: F401

MEAN = {1: 5.0, 2: 15.0}
SD = {1: 0.2, 2: 0.5}
TEMPLATE = "TPL_QC_ALERT_TEST"
MP_TEMPLATE = "MP_TPL_QC_ALERT_TEST"
ALERT_SETTINGS = {**WECHAT_SETTINGS, "WECHAT_TEMPLATE_ALERT": TEMPLATE,
                  "MP_TEMPLATE_ALERT": MP_TEMPLATE}


def derived_mariadb_url(suffix: str) -> str:
    """Return the test MariaDB URL with ``_<suffix>`` appended to the database name."""
    url = make_url(MARIADB_URL)
    return url.set(database=f"{url.database}_{suffix}").render_as_string(hide_password=False)


def build_app(request, tmp_path_factory, fake_url: str, suffix: str, **extra):
    """Create the migrated app for one DB param (``sqlite`` / ``mariadb``)."""
    if request.param == "mariadb":
        require_mariadb()
        url = derived_mariadb_url(suffix)
        recreate_mariadb_database(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'qcwx.sqlite3'}"
    application = make_test_app(url, WECHAT_API_BASE=fake_url, **ALERT_SETTINGS, **extra)
    application.config["DB_BACKEND"] = request.param
    with application.app_context():
        db.session.remove()
        db.session.configure(join_transaction_mode="create_savepoint")
    return application


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
def app(request, tmp_path_factory, fake_wechat_server):  # noqa: F811
    """The app on SQLite and MariaDB, WeChat calls going to the session's fake."""
    application = build_app(request, tmp_path_factory, fake_wechat_server.url, "alerts")
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def bound(world, session):
    """The world with limits on lab A's system and WeChat bindings.

    Lab A has two supervisors bound to the official account (plus one unbound), a technician
    bound to the mini-program; the region-1 centre user is bound too.
    """
    from tests.factories import user

    system = world.systems["a"]
    sup = world.users["supervisor"]
    start = local_today() - timedelta(days=60)
    for lv in system.levels:
        targets.set_control_limit(sup, system, lv, mean=MEAN[lv.level_index],
                                  sd=SD[lv.level_index], kind="fixed", effective_from=start,
                                  reason="说明书靶值")
    sup.wechat_openid = f"oSup{sup.id:024d}"
    sup2 = user("supervisor", lab_=world.lab_a, name="第二主管")
    sup2.wechat_openid = f"oSupB{sup2.id:023d}"
    world.users["supervisor2"] = sup2
    world.users["supervisor_unbound"] = user("supervisor", lab_=world.lab_a, name="未绑定主管")
    world.users["center"].wechat_openid = f"oCtr{world.users['center'].id:024d}"
    tech = world.users["technician"]
    tech.mp_openid = f"oMp{tech.id:025d}"
    session.commit()
    return world


def submit(world, z1, z2=None, *, day=0, run_no=1, client_id=None, role="technician"):
    """Submit a run of lab A's system with values at z1/z2 SD (service call, no commit)."""
    system = world.systems["a"]
    values = {"1": f"{MEAN[1] + z1 * SD[1]:.3f}"}
    if z2 is not None:
        values["2"] = f"{MEAN[2] + z2 * SD[2]:.3f}"
    return services.submit_run(world.users[role], test_system_id=system.id,
                               run_date=local_today() - timedelta(days=day), run_no=run_no,
                               values=values, client_id=client_id)
