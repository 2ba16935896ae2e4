"""Frozen months, the moments cache and the refresh task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from qcwx.iqc import services as iqc_services
from qcwx.peer import queries, services
from qcwx.peer.filters import month_period
from qcwx.peer.models import PeerLabDay, PeerSnapshot, PeerSnapshotLab, PeerTsState
from tests.peer.conftest import expected, level_blocks, previous_month_start, raw_values

PEER = ["r1", "r2", "r3", "r4", "r5"]


def lab_page(client, w, lab: str, month: str) -> dict:
    resp = client.get(f"/peer/labs/{w.labs[lab].id}", query_string={"period": "month",
                                                                     "month": month})
    assert resp.status_code == 200
    return level_blocks(resp.get_data(as_text=True))


def test_a_frozen_month_never_changes_after_late_submissions(peer_world, login, session):
    w = peer_world
    client = login(w.users["center"])
    resp = client.post("/peer/centre/freeze", data={"month": w.prev_month})
    assert resp.status_code == 302
    snap = session.scalar(select(PeerSnapshot).where(PeerSnapshot.region_id == w.region.id))
    assert snap.month == w.prev_month and snap.n_systems == 16  # 8 systems × 2 levels
    assert session.scalar(select(func.count()).select_from(PeerSnapshotLab).where(
        PeerSnapshotLab.snapshot_id == snap.id)) == 16
    key = (w.systems["r1"].id, w.level(1).id)
    before = lab_page(client, w, "r1", w.prev_month)[key]
    assert "已冻结" in client.get(f"/peer/labs/{w.labs['r1'].id}", query_string={
        "period": "month", "month": w.prev_month}).get_data(as_text=True)
    start = previous_month_start(w.today)
    ids = [w.systems[n].id for n in PEER]
    exp = expected(raw_values(ids, w.level(1).id, start, start + timedelta(days=27)), ids,
                   ids[0])
    assert float(before["attrs"]["data-sdi"]) == pytest.approx(exp.sdi, rel=1e-6)

    # A late run for last month through the real submission service, then the refresh task.
    iqc_services.submit_run(w.users["tech_r1"], test_system_id=w.systems["r1"].id,
                            run_date=start + timedelta(days=20), values={"1": "7.90",
                                                                         "2": "19.00"})
    services.refresh_after_submission(w.systems["r1"].id)
    session.commit()
    live = queries.compare_region(w.region.id, month_period(w.prev_month, w.today))
    live_sdi = live[(live.ts_id == key[0]) & (live.qc_level_id == key[1])]["sdi"].iloc[0]
    assert live_sdi != pytest.approx(float(before["attrs"]["data-sdi"]), rel=1e-3)
    after = lab_page(client, w, "r1", w.prev_month)[key]
    assert after["attrs"] == before["attrs"] and after["fields"] == before["fields"]

    assert client.post("/peer/centre/freeze", data={"month": w.prev_month}).status_code == 409
    resp = client.post("/peer/centre/freeze", data={"month": w.month},
                       headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "month"


def test_only_the_centre_may_freeze(peer_world, login):
    w = peer_world
    resp = login(w.users["tech_r1"]).post("/peer/centre/freeze", data={"month": w.prev_month})
    assert resp.status_code == 403


def test_freezing_every_region_skips_frozen_ones(peer_world, session):
    w = peer_world
    first = services.freeze_month(None, w.prev_month, w.today)
    created = {r.region_id: r for r in first if r.created}
    assert w.region.id in created and w.region2.id in created
    again = services.freeze_month(None, w.prev_month, w.today)
    assert not any(r.created for r in again if r.region_id in (w.region.id, w.region2.id))


def test_refresh_writes_only_changed_days_and_matches_the_raw_path(peer_world, session):
    w = peer_world
    period = month_period(w.month, w.today)
    raw = queries.compare_region(w.region.id, period).sort_values(["ts_id", "qc_level_id"])
    first = services.rebuild_cache(w.region.id)
    assert first.systems == 8 and first.days_written == 8 * 2 * 6 and first.results == 160
    cached = queries.compare_region(w.region.id, period).sort_values(["ts_id", "qc_level_id"])
    for col in ("n", "mean", "sd", "g_mean", "g_sd", "sdi", "cvr", "bias_pct"):
        assert cached[col].to_numpy() == pytest.approx(raw[col].to_numpy(), rel=1e-9,
                                                       nan_ok=True)
    assert services.refresh_after_submission(w.systems["r1"].id).days_written == 0
    iqc_services.submit_run(w.users["tech_r1"], test_system_id=w.systems["r1"].id,
                            run_date=w.today, run_no=7, values={"1": "5.61"})
    result = services.refresh_after_submission(w.systems["r1"].id)
    assert result.days_written == 1  # only today's level-1 moments changed
    row = session.scalar(select(PeerLabDay).where(
        PeerLabDay.test_system_id == w.systems["r1"].id, PeerLabDay.qc_level_id == w.level(1).id,
        PeerLabDay.day == w.today))
    assert row is not None and row.total == pytest.approx(
        sum(raw_values([w.systems["r1"].id], w.level(1).id, w.today, w.today)[
            w.systems["r1"].id]), rel=1e-12)
    assert session.get(PeerTsState, w.systems["r1"].id).n_results == 10 + 1 + 10


def test_the_celery_task_refreshes_and_commits(peer_world, session):
    from qcwx.peer.tasks import refresh

    w = peer_world
    out = refresh.apply(args=[w.systems["b1"].id]).get()
    assert out["systems"] == 1 and out["results"] == 20
    assert session.get(PeerTsState, w.systems["b1"].id) is not None


def test_unknown_system_refresh_is_a_404(peer_world):
    from qcwx.errors import NotFound

    with pytest.raises(NotFound):
        services.refresh_after_submission(10 ** 8)


def test_cli_freezes_and_rebuilds(peer_world, app, session):
    w = peer_world
    runner = app.test_cli_runner()
    result = runner.invoke(args=["peer", "freeze", "--month", w.prev_month,
                                 "--region-id", str(w.region.id)])
    assert result.exit_code == 0 and f"region {w.region.id} {w.prev_month}: frozen, 16 rows" \
        in result.output
    again = runner.invoke(args=["peer", "freeze", "--month", w.prev_month,
                                "--region-id", str(w.region.id)])
    assert again.exit_code != 0 and "已冻结" in again.output
    result = runner.invoke(args=["peer", "rebuild", "--region-id", str(w.region.id)])
    assert result.exit_code == 0 and "8 systems" in result.output


def test_refresh_is_queued_after_commit_and_forgotten_on_rollback(peer_world, session):
    w = peer_world
    ts_b2 = w.systems["b2"].id
    services.refresh_after_commit(ts_b2)
    session.rollback()
    session.commit()
    assert session.get(PeerTsState, ts_b2) is None  # rolled back: nothing was queued
    services.refresh_after_commit(ts_b2, w.systems["s1"].id)
    session.commit()  # eager Celery: the task ran on commit
    session.expire_all()
    assert session.get(PeerTsState, ts_b2).n_results == 20
    assert session.get(PeerTsState, w.systems["s1"].id) is not None


def _full_refresh_changes_nothing(session, ts_id: int) -> None:
    """The recent-days refresh left the cache exactly as a whole-history refresh makes it."""
    count = session.get(PeerTsState, ts_id).n_results
    full = services.refresh_systems([ts_id])
    assert (full.days_written, full.days_deleted) == (0, 0)
    session.expire_all()
    assert session.get(PeerTsState, ts_id).n_results == count == full.results


def test_a_refresh_since_the_first_changed_day_equals_a_whole_history_refresh(
        peer_world, session, monkeypatch):
    """Issue 14: the after-commit refresh re-reads only days from the first re-judged run on.

    A back-dated run re-judges every later run of the system, and a correction re-judges from
    its run; the cache written from those days on must be what a full re-aggregation writes.
    """
    w = peer_world
    ts = w.systems["r1"].id
    services.rebuild_cache(w.region.id)
    session.commit()
    seen = []
    real = services._refresh
    monkeypatch.setattr(services, "_refresh",
                        lambda ids, since, known: (seen.append(since), real(ids, since, known))[1])
    back = previous_month_start(w.today) + timedelta(days=2)
    verdict = iqc_services.submit_run(w.users["tech_r1"], test_system_id=ts, run_date=back,
                                      run_no=2, values={"1": "9.90", "2": "30.00"})
    session.commit()  # eager Celery: the refresh task ran on commit
    assert seen == [back] and verdict.status == "reject"
    _full_refresh_changes_nothing(session, ts)

    seen.clear()
    run = session.get(iqc_services.QcRun, verdict.run_id)
    result = next(r for r in run.results if r.is_current and r.level.level_index == 1)
    iqc_services.correct_result(w.users["tech_r1"], result.id, "5.60", "录入错误")
    session.commit()
    assert seen == [back]
    _full_refresh_changes_nothing(session, ts)


def test_a_refresh_since_a_day_of_a_never_cached_system_reads_its_whole_history(
        peer_world, session):
    w = peer_world
    ts = w.systems["r2"].id
    assert session.get(PeerTsState, ts) is None
    result = services.refresh_after_submission(ts, since=w.today)
    assert result.days_written == 2 * 6 and result.results == 20
    _full_refresh_changes_nothing(session, ts)
