"""One new result costs the same whatever the history (DEVELOPERS.md, QC_SPEC 1.2).

Counted as the database's own work, not as time, so it is exact on any machine: on MariaDB the
rows the server read (``Handler_read_*`` of the session), on SQLite the virtual-machine
instructions it ran (a progress handler called at every one). The statement count is pinned
in ``test_submit_cost.py``, but a statement whose plan walks a system's whole history keeps
the count and still grows with every run stored. Two did: the re-judge start read on MariaDB
(by its statistics it chose the level's index — every result of the level, of every lab on
the lot, read and sorted — or a rowid filter built from that index; now its plan is pinned
to walk the system's runs backwards and stop at the twelfth result), and the window read on
SQLite (``NOT (before)`` hid the date range from its planner). Run after other tests too:
the filter only showed once other tests had changed the statistics. The worker's share, the
peer refresh of the submission's day, read the system's whole peer cache on both databases
until the cache got an index on (system, day).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from qcwx.iqc import services, targets
from qcwx.orgs.models import User
from qcwx.timeutil import local_today

MEAN = {1: 5.0, 2: 15.0}
SD = {1: 0.2, 2: 0.5}


def _seed(world, session, key: str, days: int) -> int:
    ts = world.systems[key]
    start = local_today() - timedelta(days=days + 5)
    for lv in ts.levels:
        targets.set_control_limit(world.users["supervisor"], ts, lv, mean=MEAN[lv.level_index],
                                  sd=SD[lv.level_index], kind="fixed", effective_from=start,
                                  reason="说明书靶值")
    tech = world.users["technician"] if key == "a" else world.users["technician_b"]
    rows = [services.RunInput(ts.id, start + timedelta(days=d),
                              {"1": f"{MEAN[1] + (d % 3 - 1) * 0.5 * SD[1]:.3f}",
                               "2": f"{MEAN[2] - (d % 3 - 1) * 0.5 * SD[2]:.3f}"}, 1, f"h{d}")
            for d in range(days)]
    services.store_runs(tech, "h5", services.prepare_runs(tech, "h5", rows))
    session.commit()
    return ts.id


def _work_of(session, call) -> tuple[object, int]:
    """Run ``call()`` on a fresh identity map; return (its result, the database's work).

    Work is the rows MariaDB read (``Handler_read_*``) or the VM steps SQLite ran (a progress
    handler, removed afterwards so later tests on the pooled connection do not pay for it).
    """
    session.expunge_all()
    if session.get_bind().dialect.name != "sqlite":
        def rows_read() -> int:
            return sum(int(v) for _, v in session.execute(
                text("SHOW SESSION STATUS LIKE 'Handler_read%'")))

        before = rows_read()
        result = call()
        return result, rows_read() - before
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0  # go on

    raw = session.connection().connection.dbapi_connection
    raw.set_progress_handler(step, 1)
    try:
        return call(), steps[0]
    finally:
        raw.set_progress_handler(None, 1)


def _submit(session, user_id: int, ts_id: int, client_id: str) -> tuple[str, int]:
    """Submit one in-control run today, as the capture views do; return (status, work)."""
    def submit() -> str:
        actor = session.get(User, user_id)
        ts = services.load_test_system(actor, ts_id)
        return services.submit_run(actor, test_system_id=ts.id, run_date=local_today(),
                                   values={"1": "5.05", "2": "14.9"}, client_id=client_id,
                                   channel="mp").status

    return _work_of(session, submit)


def test_the_database_work_of_one_submission_does_not_grow_with_the_history(session, world):
    techs = world.users["technician"].id, world.users["technician_b"].id
    short = _seed(world, session, "a", 20)
    long = _seed(world, session, "b", 400)
    status_short, read_short = _submit(session, techs[0], short, "s1")
    status_long, read_long = _submit(session, techs[1], long, "l1")
    assert status_short == status_long == "accept"
    # 20 against 400 days: a plan that walks the history does ~20 times the work; the same
    # plan may differ by a few steps with the data (SQLite: 2181 against 2175)
    assert abs(read_long - read_short) <= 0.05 * read_short, (read_short, read_long)


def _refresh_work(session, ts_id: int) -> int:
    """The database work of the worker's peer refresh after today's run of ``ts_id``."""
    from qcwx.peer import services as peer_services

    return _work_of(session, lambda: peer_services.refresh_after_submission(
        ts_id, since=local_today()))[1]


def test_the_peer_refresh_after_a_submission_does_not_grow_with_the_history(session, world):
    """The worker's share of a submission (``qcwx.peer.refresh``): only today is re-read."""
    from qcwx.peer import services as peer_services

    techs = world.users["technician"].id, world.users["technician_b"].id
    short = _seed(world, session, "a", 20)
    long = _seed(world, session, "b", 400)
    peer_services.refresh_systems([short, long])  # both cached, as after the nightly rebuild
    _submit(session, techs[0], short, "s1")
    _submit(session, techs[1], long, "l1")
    work_short, work_long = _refresh_work(session, short), _refresh_work(session, long)
    assert abs(work_long - work_short) <= 0.05 * work_short, (work_short, work_long)
