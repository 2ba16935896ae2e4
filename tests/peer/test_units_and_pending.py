"""Issue 9 (items 4 and 5): units are never pooled; pending runs count neither way."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.iqc import services as iqc_services
from qcwx.peer import queries, services
from qcwx.peer.filters import month_period
from qcwx.peer.models import PeerLabDay, PeerSnapshotLab, PeerTsState
from qcwx.peer.queries import exceptions as exception_report
from tests.peer.conftest import (
    BECKMAN,
    ROCHE,
    SIEMENS,
    add_run,
    algorithm_a_reference,
    elements,
    expected,
    f,
    make_system,
    month_start,
    previous_month_start,
    raw_values,
)

MMOL_LABS = ["r1", "r2", "r3", "r4", "r5", "b1", "b2", "s1"]
# Five labs on the same lot/level reporting glucose in mg/dL (18 × the mmol/L value): three
# Roche HK (a peer group too small), one Beckman HK (method HK: 4 labs, too small) and one
# Siemens GOD — so they can only be published at the all-labs level, and only among themselves.
MGDL_LABS = {"m1": (ROCHE, "HK"), "m2": (ROCHE, "HK"), "m3": (ROCHE, "HK"),
             "m4": (BECKMAN, "HK"), "m5": (SIEMENS, "GOD")}


def add_mgdl_labs(w, session) -> dict[str, m.TestSystem]:
    rng = np.random.default_rng(11)
    out = {}
    for name, (instrument, method) in MGDL_LABS.items():
        lab = f.lab(f.hospital(w.region, f"毫克{name}医院"))
        ts = make_system(lab, w.glu, w.lot, instrument, method)
        ts.unit = "mg/dL"
        for start in (month_start(w.today), previous_month_start(w.today)):
            for k in range(5):
                add_run(ts, start, {1: round(99.0 * (1 + rng.normal(0, 0.015)), 1),
                                    2: round(284.4 * (1 + rng.normal(0, 0.015)), 1)},
                        run_no=k + 1)
        out[name] = ts
    session.commit()
    return out


def test_mgdl_and_mmol_labs_are_never_pooled_at_any_level(peer_world, login, session):
    w = peer_world
    mgdl = add_mgdl_labs(w, session)
    period = month_period(w.month, w.today)
    labs = queries.compare_region(w.region.id, period).set_index(["ts_id", "qc_level_id"])
    level = w.level(1).id
    mg_ids = [ts.id for ts in mgdl.values()]
    mg_values = raw_values(mg_ids, level, month_start(w.today), w.today)
    mg_mean, mg_sd = algorithm_a_reference([np.mean(v) for v in mg_values.values()])
    for ts_id in mg_ids:  # peer 3 labs, method 4, all 5: published at "all", mg/dL only
        row = labs.loc[(ts_id, level)]
        assert row["peer_n_labs"] <= 3 and row["method_n_labs"] <= 4 and row["all_n_labs"] == 5
        assert row["group_level"] == "all" and row["n_labs"] == 5
        assert row["g_mean"] == pytest.approx(mg_mean, rel=1e-9)
        assert row["g_sd"] == pytest.approx(mg_sd, rel=1e-9)
    mmol_ids = [w.systems[n].id for n in MMOL_LABS]
    values = raw_values(mmol_ids, level, month_start(w.today), w.today)
    b1, s1 = labs.loc[(w.systems["b1"].id, level)], labs.loc[(w.systems["s1"].id, level)]
    assert b1["group_level"] == "method" and b1["n_labs"] == 7
    assert s1["group_level"] == "all" and s1["n_labs"] == 8
    exp = expected(values, mmol_ids, w.systems["s1"].id)
    assert s1["g_mean"] == pytest.approx(exp.group_mean, rel=1e-9)
    assert s1["sdi"] == pytest.approx(exp.sdi, rel=1e-9)
    assert "mmol/L" in s1["group_label"] and "mg/dL" in labs.loc[(mg_ids[0], level)][
        "group_label"]

    # The frozen month takes the same path: every mg/dL row against mg/dL labs only.
    services.freeze_month(w.region.id, w.prev_month, w.today)
    rows = session.scalars(select(PeerSnapshotLab).where(
        PeerSnapshotLab.test_system_id.in_(mg_ids))).all()
    assert len(rows) == 10 and {(r.group_level, r.group_n_labs) for r in rows} == {("all", 5)}
    assert all(r.group_mean > 50 for r in rows)

    # The lot page: the centre sees the mmol/L group by default, mg/dL when filtering on it.
    client = login(w.users["center"])
    query = {"level": level, "analyte": w.glu.id}
    html = client.get("/peer/lot", query_string=query).get_data(as_text=True)
    found = {e["attrs"]["id"]: e for e in elements(html, attr="id")}
    assert found["group-summary"]["attrs"]["data-labs"] == "8"
    assert "5 家实验室使用 mg/dL" in found["other-units"]["text"]
    html = client.get("/peer/lot", query_string={**query, "unit": "mg/dl", "method": "HK"}
                      ).get_data(as_text=True)
    summary = next(e["attrs"] for e in elements(html, attr="id")
                   if e["attrs"]["id"] == "group-summary")
    assert summary["data-level"] == "all" and summary["data-labs"] == "5"
    assert float(summary["data-mean"]) == pytest.approx(mg_mean, rel=1e-9)
    resp = client.get("/peer/lot", query_string={**query, "unit": ["mg/dL", "mmol/L"]},
                      headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "unit"
    size = client.get("/peer/lot/size", query_string={**query, "method": "HK"}).get_json()
    assert size["labs"] == 7  # HK in mmol/L only, not 7 + 4 mg/dL labs

    # ... and the centre's exception report names every mg/dL system on every level.
    report = exception_report.exceptions(w.region.id, period)
    assert sorted((i.ts_id, i.level) for i in report["unit_mismatch"]) == sorted(
        (ts_id, name) for ts_id in mg_ids for name in ("水平1", "水平2"))
    assert all("mg/dL（5 家）" in i.detail and "8 家为 mmol/L" in i.detail
               for i in report["unit_mismatch"])
    assert report["outlier"] == []


def test_pending_runs_count_neither_as_in_control_nor_out(peer_world, session):
    w = peer_world
    r1, level = w.systems["r1"], w.level(1).id
    add_run(r1, month_start(w.today), {1: 7.77, 2: 22.2}, run_no=20, status="pending")
    add_run(w.systems["r2"], previous_month_start(w.today) + timedelta(days=9),
            {1: 7.77, 2: 22.2}, status="pending")
    # A system without targets: what the real submission service stores is pending.
    fresh = make_system(w.labs["r1"], w.glu, w.lot, BECKMAN, "HK")
    session.commit()
    run = iqc_services.submit_run(w.users["tech_r1"], test_system_id=fresh.id,
                                  run_date=w.today, values={"1": "5.50", "2": "15.80"})
    session.commit()
    assert run.status == "pending" and session.get(m.QcRun, run.run_id).status == "pending"
    period = month_period(w.month, w.today)
    labs = queries.compare_region(w.region.id, period).set_index(["ts_id", "qc_level_id"])
    accepted = raw_values([r1.id], level, month_start(w.today), w.today)[r1.id]
    assert len(accepted) == 5 and 7.77 not in accepted
    assert labs.loc[(r1.id, level)]["n"] == 5
    assert labs.loc[(r1.id, level)]["mean"] == pytest.approx(np.mean(accepted), rel=1e-12)
    assert fresh.id not in labs.index.get_level_values("ts_id")
    late = month_period(w.month, max(w.today, w.today.replace(day=28)))  # "few" waits till day 20
    report = exception_report.exceptions(w.region.id, late)
    assert any(i.ts_id == fresh.id and "仅 0 个在控结果" in i.detail
               for i in report["few_results"])

    # The cache and the frozen month agree: the pending runs are in neither.
    services.rebuild_cache(w.region.id)
    assert session.get(PeerTsState, fresh.id).n_results == 0
    day = session.get(PeerLabDay, (r1.id, level, month_start(w.today)))
    assert day.n == 5 and day.total == pytest.approx(sum(accepted), rel=1e-12)
    cached = queries.compare_region(w.region.id, period).set_index(["ts_id", "qc_level_id"])
    assert cached.loc[(r1.id, level)]["n"] == 5
    services.freeze_month(w.region.id, w.prev_month, w.today)
    row = session.scalar(select(PeerSnapshotLab).where(
        PeerSnapshotLab.test_system_id == w.systems["r2"].id,
        PeerSnapshotLab.qc_level_id == level))
    assert row.n == 5
