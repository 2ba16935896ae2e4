"""The suite's fixtures come from ``tests/fixtures`` (one set, named here as plugins).

``app`` is made by :func:`tests.fixtures.app.app_fixture` in each directory that needs its
own settings; the markers below are applied by location and parameter, so
``pytest -m "not mariadb"`` runs every integration test on SQLite alone and
``pytest -m "not browser and not e2e"`` skips the slow real-browser and real-worker tests.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.fixtures")

from tests.fixtures.app import app_fixture  # noqa: E402  (after the rewrite hook)

pytest_plugins = ["tests.fixtures.app", "tests.fixtures.wechat", "tests.fixtures.alerts"]

# The suite's worlds put labs of separate region trees on one QC lot to show they never mix;
# pooling trees (the product default) is tested in tests/orgs with the setting switched on.
app = app_fixture(PEER_POOL_TREES=False)

_BY_DIRECTORY = {"browser": ("browser", "slow"), "e2e": ("e2e", "redis", "mariadb", "slow")}
#: Tests that must not run beside each other when ``make test`` spreads the suite over
#: processes (``pytest -n 2 --dist loadgroup``): each group runs in one process, in order.
#: "heavy": Chromium and the real-worker stacks (gunicorn, Celery, private MariaDB and Redis
#: servers) wait on the clock, so two of them on two cores starve each other; they also share
#: the e2e Redis database. "redis-5": the modules that use and empty Redis database 5.
_GROUPS = {"heavy": ("tests/browser/", "tests/e2e/"),
           "redis-5": ("tests/wechat/test_client_token.py",
                       "tests/security/test_limits_and_callback.py")}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark each test by what it needs: MariaDB, Redis and a worker, a browser, or time.

    First of the collection hooks: pytest-xdist reads the ``xdist_group`` marks in its own
    (a plugin registered after this file, so otherwise called before it), and a mark added
    later was never seen: the groups had been spread over the processes all along.
    """
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "mariadb" in callspec.id.split("-"):
            item.add_marker(pytest.mark.mariadb)
        parts = item.path.parts
        for directory, marks in _BY_DIRECTORY.items():
            if "tests" in parts and directory in parts[parts.index("tests"):]:
                for mark in marks:
                    item.add_marker(getattr(pytest.mark, mark))
        where = item.nodeid.split("::")[0]
        for group, places in _GROUPS.items():
            if where.startswith(places):
                item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Stop the run when ``--dist loadgroup`` would spread a group over the processes.

    pytest-xdist keeps a group in one process by suffixing its tests' node ids with
    ``@group`` on each worker; with pytest 9.2 the rewrite no longer takes (pytest-xdist#1386)
    and the groups ran in both processes without a word, the heavy stacks side by side. A
    grouped test without its suffix now ends the run with this message instead.
    """
    if node.config.getvalue("dist") != "loadgroup":
        return
    places = tuple(p for group in _GROUPS.values() for p in group)
    lost = [i for i in ids if i.startswith(places) and "@" not in i]
    if lost:
        pytest.exit(f"--dist loadgroup does not group with this pytest and pytest-xdist "
                    f"(pytest-xdist#1386): {len(lost)} grouped tests have no @group suffix, "
                    f"e.g. {lost[0]}", returncode=pytest.ExitCode.USAGE_ERROR)
