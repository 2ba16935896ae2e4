"""The shift timeline of a test system as its pages serve it."""

from __future__ import annotations

from tests import factories as f


def test_a_test_system_without_results_has_a_timeline_and_refuses_bad_changes_with_400(
        session, client, login):
    """Regression (found by tests/security/test_fuzz_endpoints.py): with no results yet, the
    timeline's results frame was empty and indexing it raised, so a refused change was a 500."""
    lab = f.lab(f.hospital(f.region("无结果区")))
    ts = f.test_system(lab, f.analyte(), f.qc_lot(2))
    supervisor = f.user("supervisor", lab_=lab)
    session.commit()
    web = login(supervisor)
    assert web.get(f"/insights/ts/{ts.id}").status_code == 200
    resp = web.post(f"/insights/ts/{ts.id}/changes", data={})
    assert resp.status_code == 400 and "请选择变更类型" in resp.get_data(as_text=True)


def test_a_series_of_one_result_without_limits_is_listed_by_nobody_and_warns_nothing(
        session, client, login):
    """Regression (a warning in the permission matrix): a series with one result and no
    limits took numpy's sample SD of one value (NaN, with a RuntimeWarning)."""
    import warnings
    from datetime import timedelta

    from qcwx.iqc import services
    from qcwx.timeutil import local_today

    region = f.region("一个结果区")
    lab = f.lab(f.hospital(region))
    ts = f.test_system(lab, f.analyte(), f.qc_lot(1))
    tech, centre = f.user("technician", lab_=lab), f.user("center", region_=region)
    session.commit()
    services.submit_run(tech, test_system_id=ts.id, run_date=local_today() - timedelta(days=1),
                        values={"1": "5.1"}, client_id="one-result", channel="h5")
    session.commit()
    web = login(centre)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        resp = web.get("/insights/integrity")
    assert resp.status_code == 200 and "数据真实性" in resp.get_data(as_text=True)
