"""The window judging reads in one statement equals the two exact reads (issue 14, QC_SPEC 1.2).

:func:`qcwx.iqc.window.runs_to_judge` first tries the newest result rows alone and falls back
to :func:`rejudge_start` + :func:`runs_from`. Whichever way it goes, it must hand the judge
the same runs with the same result rows, for every run of any history: sparse levels (a
level run once a week), several runs a day, corrected results (rows that are no longer
current), a history shorter than a window.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from qcwx.extensions import db
from qcwx.iqc import evaluation, services, window
from qcwx.iqc.models import QcRun
from qcwx.qcstats import westgard
from qcwx.timeutil import local_today

from .test_rejudge import from_scratch, make_system, result_of, stored, text


def shape(found):
    runs, rows = found
    return [r.id for r in runs], sorted(rows, key=lambda r: (r[0], r[1], r[3], r[4]))


def judged_shape(found, run_id: int):
    """:func:`shape` with the text of every row but the judged run's left out: a live run
    reads no text of the runs before it (only the judged run's values are shown)."""
    ids, rows = shape(found)
    return ids, [r if r[0] == run_id else (*r[:4], None) for r in rows]


def runs_of(system):
    return list(db.session.scalars(select(QcRun).where(QcRun.test_system_id == system.id)
                                   .order_by(QcRun.run_date, QcRun.run_no)))


def store_one_by_one(world, system, runs, start):
    """Store runs [(day, run no, {level index: z})] one request each, as phones do."""
    tech = world.users["technician"]
    for day, number, levels in runs:
        services.submit_run(tech, test_system_id=system.id,
                            run_date=start + timedelta(days=day), run_no=number,
                            values={str(k): text(k, z) for k, z in levels.items()},
                            client_id=f"w-{system.id}-{day}-{number}")


@st.composite
def histories(draw):
    n_levels = draw(st.integers(1, 3))
    every = [draw(st.sampled_from([1, 1, 2, 7])) for _ in range(n_levels)]
    runs = []
    for d in range(draw(st.integers(3, 40))):
        for number in range(1, draw(st.sampled_from([1, 1, 1, 2])) + 1):
            levels = {k + 1: draw(st.sampled_from([-2.2, 0.0, 0.4, 2.1]))
                      for k in range(n_levels) if d % every[k] == 0}
            if levels:
                runs.append((d, number, levels))
    return n_levels, runs, draw(st.lists(st.integers(0, 10_000), max_size=4))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(histories(), st.data())
def test_a_live_run_judged_before_its_insert_equals_judging_it_after(
        session, world, monkeypatch, history, data):
    """A live submission reads the newest rows with its store checks and judges its run on
    them plus its own values before inserting it (:func:`evaluation.judge_before_insert`),
    so the run is inserted with its verdict. That judgement must equal judging the stored
    run afresh: the same runs, z matrix, values and verdict; and every stored verdict must
    equal judging from scratch, also when runs arrive late (back-dated: then the run is
    judged after its insert, reading the rows itself)."""
    n_levels, runs, late = history
    start = local_today() - timedelta(days=100)
    system = make_system(world, n_levels, start)
    held = {i % len(runs) for i in late}
    order = [r for i, r in enumerate(runs) if i not in held] + [runs[i] for i in sorted(held)]
    used, real = [], evaluation.evaluate_from

    def checked(ts, run, **kw):
        early = kw.get("judgement")
        if early is not None:  # the run and its results are stored by now
            again = evaluation.judge(ts, run)
            i = early.first
            assert [r.id for r in early.runs] == [r.id for r in again.runs]
            assert i == again.first == len(early.runs) - 1
            assert np.array_equal(early.window.z, again.window.z, equal_nan=True)
            # the judged run's values as typed (the runs before it are read without texts)
            assert early.window.current[run.id] == again.window.current[run.id]
            assert early.status(i) == again.status(i)
            if early.status(i) != "pending":
                assert early.evaluation[i] == again.evaluation[i]
            assert session.get(QcRun, run.id).status == early.status(i)
            used.append(run.id)
        return real(ts, run, **kw)

    monkeypatch.setattr(evaluation, "evaluate_from", checked)
    monkeypatch.setattr(services, "evaluate_from", checked)
    for k, one in enumerate(order):
        store_one_by_one(world, system, [one], start)
        assert stored(system) == from_scratch(system)
        if k < len(order) - len(held):  # sent in order: the newest run of the system
            run = runs_of(system)[-1]
            # judged before its insert exactly when the rows before it reach its windows'
            # start (a sparse level's may lie further back: then it is judged after)
            assert (run.id in used) == (window._newest(system, run) is not None)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(histories())
def test_the_one_statement_window_equals_the_two_exact_reads_for_every_run(
        session, world, history):
    n_levels, runs, corrections = history
    start = local_today() - timedelta(days=100)
    system = make_system(world, n_levels, start)
    store_one_by_one(world, system, runs, start)
    stored = runs_of(system)
    for pick in corrections:  # corrected results leave rows that are no longer current
        run = stored[pick % len(stored)]
        level = sorted(r.level.level_index for r in run.results if r.is_current)[0]
        services.correct_result(world.users["technician"], result_of(run, level).id,
                                text(level, 0.2), "更正")
    db.session.flush()
    for run in stored:
        expected = window.runs_from(system, window.rejudge_start(system, run))
        assert shape(window.runs_to_judge(system, run)) == shape(expected), run.run_date


def test_a_live_submission_reads_its_window_in_one_statement_and_a_sparse_level_in_two(
        session, world, monkeypatch):
    start = local_today() - timedelta(days=100)
    dense = make_system(world, 2, start)
    store_one_by_one(world, dense, [(d, 1, {1: 0.1, 2: -0.1}) for d in range(30)], start)
    sparse = make_system(world, 2, start)  # level 2 once a week: its window reaches weeks back
    store_one_by_one(world, sparse, [(d, 1, {1: 0.1, 2: -0.1} if d % 7 == 0 else {1: 0.1})
                                     for d in range(30)], start)
    calls, exact = [], window.rejudge_start
    monkeypatch.setattr(window, "rejudge_start", lambda *a: calls.append(a) or exact(*a))
    for system, fallbacks in ((dense, 0), (sparse, 1)):
        calls.clear()
        newest = runs_of(system)[-1]
        runs, _ = window.runs_to_judge(system, newest)
        assert len(calls) == fallbacks
        assert runs[-1].id == newest.id and len(runs) >= westgard.MAX_LOOKBACK + 1
