"""Instrument comparison: the QC_SPEC §6 worked example, QC pairs, uploads, permissions."""

from __future__ import annotations

import io
import math
from datetime import timedelta

import numpy as np
import openpyxl
import pytest
from sqlalchemy import func, select

from qcwx import models as m
from qcwx.extensions import db
from tests import factories as f
from tests.peer.conftest import add_run, elements, month_start

X = [1.0, 2.1, 2.9, 4.2, 5.0, 6.1, 7.0, 8.2, 8.9, 10.1]
Y = [1.1, 2.0, 3.2, 4.5, 5.1, 6.5, 7.2, 8.8, 9.4, 10.9]


def csv_bytes(xs=X, ys=Y, header="样本号,罗氏 c702,贝克曼 AU5800") -> bytes:
    lines = [header] + [f"S{i + 1},{x},{y}" for i, (x, y) in enumerate(zip(xs, ys, strict=True))]
    return ("\n".join(lines) + "\n").encode("utf-8")


def upload(client, w, data: bytes, name="pairs.csv", **extra):
    form = {"source": "upload", "lab_id": str(w.labs["r1"].id), "analyte_id": str(w.glu.id),
            "file": (io.BytesIO(data), name), **extra}
    return client.post("/analytics/comparisons", data=form, content_type="multipart/form-data")


def detail(client, resp) -> dict:
    assert resp.status_code == 302, resp.get_data(as_text=True)[:800]
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    return {"attrs": elements(html, attr="data-pb-slope")[0]["attrs"], "html": html,
            "levels": [e["attrs"] for e in elements(html, attr="data-xc")]}


def test_worked_example_of_qc_spec_6_from_an_uploaded_csv(aworld, login):
    client = login(aworld.users["sup_r1"])
    got = detail(client, upload(client, aworld, csv_bytes(), decision_levels="5.0, 8.0",
                                allowable_bias="5"))
    a = got["attrs"]
    assert round(float(a["data-pb-slope"]), 6) == 1.069444
    assert round(float(a["data-pb-intercept"]), 6) == -0.007639
    assert round(float(a["data-dm-slope"]), 6) == 1.073974
    assert round(float(a["data-dm-intercept"]), 6) == -0.090554
    x, y = np.array(X), np.array(Y)
    r = np.sum((x - x.mean()) * (y - y.mean())) / math.sqrt(
        np.sum((x - x.mean()) ** 2) * np.sum((y - y.mean()) ** 2))
    assert float(a["data-r"]) == pytest.approx(r, rel=1e-12)
    within = sum(abs(yi - xi) / xi * 100 <= 5 for xi, yi in zip(X, Y, strict=True))
    assert float(a["data-fraction"]) == pytest.approx(within / 10)
    assert float(a["data-md"]) == pytest.approx(sum(Y) / 10 - sum(X) / 10, rel=1e-12)
    for lv, xc in zip(got["levels"], (5.0, 8.0), strict=True):
        assert float(lv["data-bias"]) == pytest.approx(
            100 * (-0.007639 + 1.069444 * xc - xc) / xc, abs=1e-4)  # 6-decimal a, b
    assert "罗氏 c702" in got["html"] and "贝克曼 AU5800" in got["html"]
    row = db.session.scalar(select(m.InstrumentComparison))
    assert row.created_by_id == aworld.users["sup_r1"].id and row.source == "upload"
    assert row.allowable_bias == 5.0 and row.decision_levels == [5.0, 8.0]


def test_deming_lambda_is_configurable(aworld, login):
    client = login(aworld.users["sup_r1"])
    got = detail(client, upload(client, aworld, csv_bytes(), error_ratio="2"))
    x, y, lam = np.array(X), np.array(Y), 2.0
    u, q = np.sum((x - x.mean()) ** 2), np.sum((y - y.mean()) ** 2)
    p = np.sum((x - x.mean()) * (y - y.mean()))
    b = ((lam * q - u) + math.sqrt((u - lam * q) ** 2 + 4 * lam * p * p)) / (2 * lam * p)
    assert float(got["attrs"]["data-dm-slope"]) == pytest.approx(b, rel=1e-12)


def test_default_allowable_bias_is_the_specs_and_default_level_the_median(aworld, login):
    client = login(aworld.users["sup_r1"])
    detail(client, upload(client, aworld, csv_bytes()))
    row = db.session.scalar(select(m.InstrumentComparison))
    assert row.allowable_bias == 2.0  # the world's glucose spec: allowable bias 2.0 %
    assert row.decision_levels == [sorted(X)[5]]


def test_xlsx_upload_without_sample_column(aworld, login):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["A 仪器", "B 仪器"])
    for x, y in zip(X, Y, strict=True):
        ws.append([x, y])
    buf = io.BytesIO()
    wb.save(buf)
    client = login(aworld.users["sup_r1"])
    got = detail(client, upload(client, aworld, buf.getvalue(), name="p.xlsx"))
    assert round(float(got["attrs"]["data-pb-slope"]), 6) == 1.069444


@pytest.mark.parametrize(("data", "needle"), [
    (csv_bytes(X[:5], Y[:5]), "至少需要 10 对"),
    (csv_bytes().replace(b"S3,2.9", b"S3,abc"), "第 4 行"),
    (b"", "请选择要上传的文件"),
    (b"\x00\x01\x02binary", "不是 CSV"),
])
def test_bad_uploads_answer_400_and_store_nothing(aworld, login, data, needle):
    client = login(aworld.users["sup_r1"])
    resp = upload(client, aworld, data)
    assert resp.status_code == 400 and needle in resp.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(m.InstrumentComparison)) == 0


def test_bad_settings_name_their_field(aworld, login):
    client = login(aworld.users["sup_r1"])
    for extra, needle in (({"error_ratio": "-1"}, "误差方差比"), ({"decision_levels": "x"},
                                                                   "医学决定水平")):
        resp = upload(client, aworld, csv_bytes(), **extra)
        assert resp.status_code == 400 and needle in resp.get_data(as_text=True)


def second_analyser(w):
    """A second glucose analyser in lab r1 on the same lot, measured on the same days."""
    ts2 = f.test_system(w.labs["r1"], w.glu, w.lot, maker="Beckman", model="AU5800")
    ts1 = w.systems["r1"]
    start = month_start(w.today)
    for k in range(12):
        day = start - timedelta(days=20 - k)
        add_run(ts2, day, {1: 5.6 + 0.01 * k, 2: 16.1 - 0.02 * k})
        if k % 4:  # ts1 skips some days: those are not pairs
            add_run(ts1, day, {1: 5.5 + 0.012 * k, 2: 15.8 - 0.01 * k})
            add_run(ts1, day, {1: 5.52 + 0.012 * k, 2: 15.84 - 0.01 * k}, run_no=2)
    db.session.commit()
    return ts1, ts2


def test_qc_pairs_are_same_day_same_level_means(aworld, login):
    w = aworld
    ts1, ts2 = second_analyser(w)
    client = login(w.users["sup_r1"])
    start = month_start(w.today) - timedelta(days=20)
    resp = client.post("/analytics/comparisons", data={
        "source": "qc", "x_ts": ts1.id, "y_ts": ts2.id, "start": start.isoformat(),
        "end": (start + timedelta(days=11)).isoformat()})
    got = detail(client, resp)
    row = db.session.scalar(select(m.InstrumentComparison))
    expected = []
    for k in range(12):
        if k % 4:
            expected += [(5.51 + 0.012 * k, 5.6 + 0.01 * k), (15.82 - 0.01 * k, 16.1 - 0.02 * k)]
    got_pairs = sorted((round(p[0], 9), round(p[1], 9)) for p in row.pairs)
    assert got_pairs == sorted((round(a, 9), round(b, 9)) for a, b in expected)
    assert int(got["attrs"]["data-n"]) == len(expected) == 18
    assert row.x_ts_id == ts1.id and row.source == "qc"


def test_qc_comparison_needs_the_same_lot(aworld, login):
    w = aworld
    other = f.test_system(w.labs["r1"], w.glu, f.qc_lot(2), maker="Beckman", model="AU5800")
    db.session.commit()
    resp = login(w.users["sup_r1"]).post("/analytics/comparisons", data={
        "source": "qc", "x_ts": w.systems["r1"].id, "y_ts": other.id})
    assert resp.status_code == 400 and "同一质控批号" in resp.get_data(as_text=True)


@pytest.mark.parametrize(("user", "status"), [
    ("tech_r1", 403), ("sup_b1", 404), ("tech_b1", 403), ("center2", 404),
    ("director_r1", 302), ("center", 302), ("admin", 302)])
def test_running_a_comparison_permissions(aworld, login, user, status):
    assert upload(login(aworld.users[user]), aworld, csv_bytes()).status_code == status


@pytest.mark.parametrize(("user", "status"), [
    ("tech_r1", 200), ("sup_r1", 200), ("director_r1", 200), ("center", 200), ("admin", 200),
    ("tech_b1", 404), ("sup_b1", 404), ("center2", 404)])
def test_reading_a_saved_comparison_permissions(aworld, login, user, status):
    client = login(aworld.users["sup_r1"])
    location = upload(client, aworld, csv_bytes()).headers["Location"]
    assert login(aworld.users[user]).get(location).status_code == status
    listing = login(aworld.users[user]).get("/analytics/comparisons")
    assert listing.status_code == 200
    assert (location in listing.get_data(as_text=True)) == (status == 200)


def test_anonymous_is_sent_to_login(client):
    for resp in (client.get("/analytics/comparisons"), client.get("/analytics/comparisons/1"),
                 client.post("/analytics/comparisons")):
        assert resp.status_code == 302 and "login" in resp.headers["Location"]
