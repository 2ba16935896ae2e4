"""σ, TE and MU per test system, recomputed here from the raw results with plain numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.audit.models import AuditLog
from qcwx.extensions import db
from qcwx.iqc.queries import current_rule_set
from qcwx.qcstats.rulesets import sigma_rule_set
from tests.peer.conftest import algorithm_a_reference, elements, month_start, raw_values

PEER = ["r1", "r2", "r3", "r4", "r5"]
TEA_PCT = 7.0  # the world's glucose spec: 0.21 mmol/L (≤ 3.0), 7 % above; levels are 5.5, 15.8


def expected_level(w, lab: str, level_index: int) -> dict:
    """Lab mean/CV, Algorithm A group mean, bias, TE and σ from the raw rows (this month)."""
    level = w.level(level_index)
    ids = [w.systems[k].id for k in PEER]
    values = raw_values(ids, level.id, month_start(w.today), w.today)
    means = {t: float(np.mean(v)) for t, v in values.items()}
    gm, _ = algorithm_a_reference(list(means.values()))
    own = values[w.systems[lab].id]
    mean, cv = float(np.mean(own)), 100 * float(np.std(own, ddof=1)) / float(np.mean(own))
    bias = 100 * (mean - gm) / gm
    return {"n": len(own), "cv": cv, "bias": bias, "te": abs(bias) + 1.65 * cv,
            "sigma": (TEA_PCT - abs(bias)) / cv, "gm": gm}


def rows_of(html: str) -> dict[int, dict]:
    return {int(e["attrs"]["data-level"]): e["attrs"]
            for e in elements(html, attr="data-sigma") if "data-level" in e["attrs"]}


def get(login, w, user, url, **args):
    client = login(w.users[user])
    return client.get(url, query_string=args)


def test_system_page_shows_te_sigma_recomputed_from_raw_results(aworld, login):
    w = aworld
    resp = get(login, w, "tech_r1", f"/analytics/sigma/ts/{w.systems['r1'].id}",
               period="month", month=w.month)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:600]
    html = resp.get_data(as_text=True)
    shown = rows_of(html)
    for index in (1, 2):
        exp = expected_level(w, "r1", index)
        attrs = shown[w.level(index).id]
        assert float(attrs["data-cv"]) == pytest.approx(exp["cv"], rel=1e-9)
        assert float(attrs["data-bias"]) == pytest.approx(exp["bias"], rel=1e-6)
        assert float(attrs["data-tea"]) == pytest.approx(TEA_PCT)
        assert float(attrs["data-te"]) == pytest.approx(exp["te"], rel=1e-6)
        assert float(attrs["data-sigma"]) == pytest.approx(exp["sigma"], rel=1e-6)
    design = min(expected_level(w, "r1", i)["sigma"] for i in (1, 2))
    advisor = elements(html, attr="data-reason")[0]["attrs"]
    assert float(advisor["data-sigma"]) == pytest.approx(design, rel=1e-6)
    codes = "/".join(c for c, r in sigma_rule_set(design).items() if r != "off")
    assert advisor["data-reason"].startswith(f"σ = {design:.1f} → {codes}, N=")


def test_target_basis_takes_bias_against_the_control_limit(aworld, login):
    w = aworld
    ts = w.systems["r1"]
    html = get(login, w, "tech_r1", f"/analytics/sigma/ts/{ts.id}", period="month",
               month=w.month, basis="target").get_data(as_text=True)
    limit = db.session.scalar(select(m.ControlLimit).where(
        m.ControlLimit.test_system_id == ts.id, m.ControlLimit.qc_level_id == w.level(1).id))
    own = raw_values([ts.id], w.level(1).id, month_start(w.today), w.today)[ts.id]
    bias = 100 * (float(np.mean(own)) - limit.target_mean) / limit.target_mean
    cv = 100 * float(np.std(own, ddof=1)) / float(np.mean(own))
    attrs = rows_of(html)[w.level(1).id]
    assert float(attrs["data-bias"]) == pytest.approx(bias, rel=1e-9)
    assert float(attrs["data-sigma"]) == pytest.approx((TEA_PCT - abs(bias)) / cv, rel=1e-9)


def test_measurement_uncertainty_from_cumulative_cv_and_monthly_bias(aworld, login):
    w = aworld
    ts = w.systems["r1"]
    html = get(login, w, "tech_r1", f"/analytics/sigma/ts/{ts.id}", period="month",
               month=w.month).get_data(as_text=True)
    level = w.level(1)
    own = raw_values([ts.id], level.id, month_start(w.today).replace(year=w.today.year - 2),
                     w.today)[ts.id]
    u_rw = 100 * float(np.std(own, ddof=1)) / float(np.mean(own))
    start_prev = (month_start(w.today) - __import__("datetime").timedelta(days=1)).replace(day=1)
    biases = []
    for first, last in ((start_prev, month_start(w.today) - __import__("datetime").timedelta(1)),
                        (month_start(w.today), w.today)):
        vals = raw_values([w.systems[k].id for k in PEER], level.id, first, last)
        gm, _ = algorithm_a_reference([float(np.mean(v)) for v in vals.values()])
        biases.append(100 * (float(np.mean(vals[ts.id])) - gm) / gm)
    u_bias = math.sqrt(sum(b * b for b in biases) / len(biases))
    attrs = rows_of(html)[level.id]
    assert float(attrs["data-u"]) == pytest.approx(2 * math.hypot(u_rw, u_bias), rel=1e-6)


def test_lab_page_lists_every_level_and_draws_the_decision_chart(aworld, login):
    w = aworld
    resp = get(login, w, "tech_r1", "/analytics/sigma/lab", period="month", month=w.month)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert len(rows_of(html)) == 2 and "an-lab-decision" in html
    exp = expected_level(w, "r1", 2)
    assert float(rows_of(html)[w.level(2).id]["data-sigma"]) == pytest.approx(exp["sigma"],
                                                                                rel=1e-6)


def test_region_distribution_counts_every_published_level(aworld, login):
    w = aworld
    resp = get(login, w, "center", "/analytics/sigma/region", period="month", month=w.month)
    assert resp.status_code == 200
    row = elements(resp.get_data(as_text=True), attr="data-analyte")[0]["attrs"]
    sigmas = []
    for k in PEER:  # b1, b2 (method group of 7) and s1 (all 8) are published too
        sigmas += [expected_level(w, k, i)["sigma"] for i in (1, 2)]
    assert int(row["data-n"]) == 16  # 8 labs × 2 levels, every group level publishable
    assert float(row["data-median"]) == pytest.approx(float(np.median(
        [float(e) for e in _all_sigmas(w)])), rel=1e-6)


def _all_sigmas(w):
    """σ of all 16 rows: the peer group for r1–r5, method (r+b) for b1, b2, all 8 for s1."""
    from tests.peer.conftest import expected as peer_expected

    out = []
    groups = {"peer": PEER, "method": PEER + ["b1", "b2"], "all": list(w.systems)[:8]}
    member = {**dict.fromkeys(PEER, "peer"), "b1": "method", "b2": "method", "s1": "all"}
    for index in (1, 2):
        level = w.level(index)
        ids = {k: w.systems[k].id for k in groups["all"]}
        values = raw_values(list(ids.values()), level.id, month_start(w.today), w.today)
        for lab, group in member.items():
            e = peer_expected(values, [ids[k] for k in groups[group]], ids[lab])
            out.append((TEA_PCT - abs(e.bias)) / e.lab_cv)
    return out


@pytest.mark.parametrize(("user", "status"), [
    ("tech_r1", 200), ("sup_r1", 200), ("director_r1", 200), ("center", 200), ("admin", 200),
    ("tech_b1", 404), ("sup_b1", 404), ("center2", 404)])
def test_system_page_scope(aworld, login, user, status):
    resp = get(login, aworld, user, f"/analytics/sigma/ts/{aworld.systems['r1'].id}")
    assert resp.status_code == status


@pytest.mark.parametrize(("user", "status"), [
    ("tech_r1", 403), ("sup_r1", 403), ("director_r1", 403), ("center", 200), ("admin", 200)])
def test_region_page_is_for_the_centre(aworld, login, user, status):
    assert get(login, aworld, user, "/analytics/sigma/region").status_code == status


@pytest.mark.parametrize(("user", "status"), [
    ("tech_r1", 200), ("director_r1", 200), ("center", 200), ("tech_b1", 404),
    ("sup_b1", 404), ("center2", 404), ("admin", 200)])
def test_lab_page_scope(aworld, login, user, status):
    resp = get(login, aworld, user, f"/analytics/sigma/lab/{aworld.labs['r1'].id}")
    assert resp.status_code == status


@pytest.mark.parametrize("url", ["/analytics/sigma/lab", "/analytics/sigma/region",
                                 "/analytics/sigma/ts/1"])
def test_anonymous_is_sent_to_login(client, url):
    resp = client.get(url)
    assert resp.status_code == 302 and "login" in resp.headers["Location"]


def test_bad_basis_and_period_answer_400(aworld, login):
    ts = aworld.systems["r1"].id
    assert get(login, aworld, "tech_r1", f"/analytics/sigma/ts/{ts}",
               basis="x").status_code == 400
    assert get(login, aworld, "tech_r1", f"/analytics/sigma/ts/{ts}",
               period="decade").status_code == 400


def apply(login, w, user, **form):
    client = login(w.users[user])
    data = {"period": "month", "month": w.month, "basis": "peer", **form}
    return client.post(f"/analytics/sigma/ts/{w.systems['r1'].id}/apply", data=data)


def test_supervisor_applies_the_advice_as_an_audited_rule_set_version(aworld, login):
    w = aworld
    ts = w.systems["r1"]
    design = min(expected_level(w, "r1", i)["sigma"] for i in (1, 2))
    before = db.session.scalar(select(db.func.count()).select_from(AuditLog))
    resp = apply(login, w, "sup_r1")
    assert resp.status_code == 302 and f"/ts/{ts.id}/rules" in resp.headers["Location"]
    row = db.session.scalar(select(m.RuleSet).where(m.RuleSet.test_system_id == ts.id)
                            .order_by(m.RuleSet.version.desc()))
    assert row.rules == sigma_rule_set(design)
    assert row.reason.startswith(f"σ = {design:.1f} → 1-3s")
    assert row.created_by_id == w.users["sup_r1"].id
    assert current_rule_set(ts) == sigma_rule_set(design)
    assert db.session.scalar(select(db.func.count()).select_from(AuditLog)) > before
    audit = db.session.scalar(select(AuditLog).where(AuditLog.entity == "rule_set",
                                                     AuditLog.entity_id == str(row.id)))
    assert audit.action == "insert" and audit.actor_id == w.users["sup_r1"].id
    assert audit.changes["reason"] == row.reason
    again = apply(login, w, "sup_r1")  # nothing left to adopt
    assert again.status_code == 400 and "一致" in again.get_data(as_text=True)


def test_a_stale_advice_is_refused_with_409(aworld, login):
    resp = apply(login, aworld, "sup_r1", expected="σ = 9.9 → 1-3s, N=2")
    assert resp.status_code == 409
    assert db.session.scalar(select(m.RuleSet).where(
        m.RuleSet.test_system_id == aworld.systems["r1"].id)) is None


@pytest.mark.parametrize(("user", "status"), [
    ("tech_r1", 403), ("sup_b1", 404), ("tech_b1", 404), ("center2", 404),
    ("director_r1", 302), ("center", 302), ("admin", 302)])
def test_apply_permissions(aworld, login, user, status):
    assert apply(login, aworld, user).status_code == status


def test_anonymous_cannot_apply(aworld, client):
    resp = client.post(f"/analytics/sigma/ts/{aworld.systems['r1'].id}/apply")
    assert resp.status_code == 302 and "login" in resp.headers["Location"]
    assert db.session.scalar(select(m.RuleSet)) is None
