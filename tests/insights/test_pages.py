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
