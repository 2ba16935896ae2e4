"""Before/after: each period against its own peer group; F and Welch's t recomputed here."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest

from tests.analytics.test_significance import f_pdf, integral, t_pdf
from tests.peer.conftest import algorithm_a_reference, elements, month_start, raw_values

PEER = ["r1", "r2", "r3", "r4", "r5"]
TEA = 7.0


def spans(w):
    prev = (month_start(w.today) - timedelta(days=1)).replace(day=1)
    return {"a_start": prev.isoformat(), "a_end": (prev + timedelta(days=4)).isoformat(),
            "b_start": month_start(w.today).isoformat(), "b_end": w.today.isoformat()}


def side(w, lab, level, start, end):
    ids = [w.systems[k].id for k in PEER]
    vals = raw_values(ids, level.id, start, end)
    gm, gs = algorithm_a_reference([float(np.mean(v)) for v in vals.values()])
    own = np.array(vals[w.systems[lab].id])
    mean, sd = float(own.mean()), float(own.std(ddof=1))
    cv, bias = 100 * sd / mean, 100 * (mean - gm) / gm
    return {"n": own.size, "mean": mean, "sd": sd, "cv": cv, "bias": bias,
            "sdi": (mean - gm) / gs, "sigma": (TEA - abs(bias)) / cv}


def get(login, w, user, **args):
    return login(w.users[user]).get("/analytics/periods", query_string={**spans(w), **args})


def test_test_system_change_with_f_and_welch_recomputed(aworld, login):
    w = aworld
    ts = w.systems["r1"]
    resp = get(login, w, "tech_r1", ts=ts.id)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    html = resp.get_data(as_text=True)
    rows = {int(e["attrs"]["data-level"]): e["attrs"] for e in elements(html, "an-row")}
    s = spans(w)
    for index in (1, 2):
        level = w.level(index)
        from datetime import date
        a = side(w, "r1", level, date.fromisoformat(s["a_start"]), date.fromisoformat(s["a_end"]))
        b = side(w, "r1", level, date.fromisoformat(s["b_start"]), date.fromisoformat(s["b_end"]))
        attrs = rows[level.id]
        assert float(attrs["data-cv-before"]) == pytest.approx(a["cv"], rel=1e-9)
        assert float(attrs["data-cv-after"]) == pytest.approx(b["cv"], rel=1e-9)
        assert float(attrs["data-sigma-before"]) == pytest.approx(a["sigma"], rel=1e-6)
        assert float(attrs["data-sigma-after"]) == pytest.approx(b["sigma"], rel=1e-6)
        f = b["sd"] ** 2 / a["sd"] ** 2
        d1, d2 = b["n"] - 1, a["n"] - 1
        lower = integral(lambda x, d1=d1, d2=d2: f_pdf(x, d1, d2), 1e-12, f)
        assert float(attrs["data-f"]) == pytest.approx(f, rel=1e-9)
        assert float(attrs["data-f-p"]) == pytest.approx(2 * min(lower, 1 - lower), abs=1e-5)
        v1, v2 = a["sd"] ** 2 / a["n"], b["sd"] ** 2 / b["n"]
        t = (b["mean"] - a["mean"]) / math.sqrt(v1 + v2)
        df = (v1 + v2) ** 2 / (v1 ** 2 / (a["n"] - 1) + v2 ** 2 / (b["n"] - 1))
        assert float(attrs["data-t"]) == pytest.approx(t, rel=1e-9)
        assert float(attrs["data-t-df"]) == pytest.approx(df, rel=1e-9)
        p = 1 - 2 * integral(lambda x, df=df: t_pdf(x, df), 0.0, abs(t))
        assert float(attrs["data-t-p"]) == pytest.approx(p, abs=1e-6)


def test_lab_summary_is_the_median_sigma_of_its_rows(aworld, login):
    w = aworld
    html = get(login, w, "tech_r1").get_data(as_text=True)
    group = elements(html, attr="data-group")[0]["attrs"]
    rows = elements(html, "an-row")
    after = [float(e["attrs"]["data-sigma-after"]) for e in rows]
    assert int(group["data-n-after"]) == 2
    assert float(group["data-sigma-after"]) == pytest.approx(float(np.median(after)), rel=1e-12)


def test_region_scope_summarises_per_lab(aworld, login):
    w = aworld
    resp = get(login, w, "center", scope="region")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    groups = elements(html, attr="data-group")
    assert int(groups[0]["attrs"]["data-n-after"]) == 16  # 8 labs × 2 levels
    assert len(groups) == 1 + 8 and not elements(html, "an-row")


@pytest.mark.parametrize(("user", "status"), [
    ("tech_r1", 200), ("sup_r1", 200), ("director_r1", 200), ("center", 200), ("admin", 200),
    ("tech_b1", 404), ("sup_b1", 404), ("center2", 404)])
def test_test_system_scope(aworld, login, user, status):
    assert get(login, aworld, user, ts=aworld.systems["r1"].id).status_code == status


@pytest.mark.parametrize(("user", "status"), [
    ("tech_r1", 403), ("sup_r1", 403), ("director_r1", 403), ("center", 200), ("admin", 200),
    ("expert", 200)])
def test_region_scope_is_for_the_centre(aworld, login, user, status):
    assert get(login, aworld, user, scope="region").status_code == status


@pytest.mark.parametrize(("user", "status"), [("tech_b1", 404), ("center2", 404),
                                              ("director_r1", 200)])
def test_lab_scope(aworld, login, user, status):
    assert get(login, aworld, user, lab=aworld.labs["r1"].id).status_code == status


def test_anonymous_is_sent_to_login(client):
    resp = client.get("/analytics/periods")
    assert resp.status_code == 302 and "login" in resp.headers["Location"]


@pytest.mark.parametrize("args", [{"a_start": "2026-13-01"}, {"b_end": "2999-01-01"},
                                  {"a_start": "2026-05-02", "a_end": "2026-05-01"},
                                  {"ts": "abc"},
                                  # regression: the default start, 29 days before, was a 500
                                  {"b_end": "0001-01-01"}, {"a_end": "0001-01-01"}])
def test_bad_dates_answer_400_naming_the_field(aworld, login, args):
    resp = login(aworld.users["tech_r1"]).get("/analytics/periods", query_string=args)
    assert resp.status_code == 400
