"""Saved comparisons chosen on the dynamic report become sections (page, Excel, share link)."""

from __future__ import annotations

import io

import openpyxl
import pytest

from tests.analytics.test_comparison import csv_bytes, upload


@pytest.fixture
def saved(aworld, login):
    client = login(aworld.users["sup_r1"])
    resp = upload(client, aworld, csv_bytes(), decision_levels="5.0")
    assert resp.status_code == 302
    return int(resp.headers["Location"].rsplit("/", 1)[1])


def test_chosen_comparison_is_a_section_of_the_dynamic_report(aworld, login, saved):
    client = login(aworld.users["tech_r1"])
    url = f"/reports/labs/{aworld.labs['r1'].id}/dynamic"
    plain = client.get(url).get_data(as_text=True)
    assert "仪器比对：" not in plain and f'name="cmp" value="{saved}"' in plain
    html = client.get(url, query_string={"cmp": saved}).get_data(as_text=True)
    assert "仪器比对：葡萄糖 罗氏 c702 → 贝克曼 AU5800" in html
    assert "1.0694" in html and "rp-cmp" in html  # PB slope (QC_SPEC §6) and the charts


def test_excel_export_carries_the_comparison_tables(aworld, login, saved):
    client = login(aworld.users["tech_r1"])
    resp = client.get(f"/reports/labs/{aworld.labs['r1'].id}/dynamic.xlsx",
                      query_string={"cmp": saved})
    assert resp.status_code == 200
    wb = openpyxl.load_workbook(io.BytesIO(resp.data))
    sheet = wb[f"比对{saved}回归"]
    values = [row for row in sheet.iter_rows(values_only=True)]
    slope = next(r for r in values if r and r[0] == "Passing–Bablok")[1]
    assert round(float(slope), 6) == 1.069444


def test_another_labs_comparison_cannot_be_chosen(aworld, login, saved):
    resp = login(aworld.users["tech_b1"]).get(
        f"/reports/labs/{aworld.labs['b1'].id}/dynamic", query_string={"cmp": saved})
    assert resp.status_code == 400


def test_bad_cmp_argument_is_400(aworld, login):
    resp = login(aworld.users["tech_r1"]).get(
        f"/reports/labs/{aworld.labs['r1'].id}/dynamic", query_string={"cmp": "x1"})
    assert resp.status_code == 400


def test_shared_link_keeps_the_chosen_comparison(aworld, login, saved):
    client = login(aworld.users["sup_r1"])
    resp = client.post("/reports/share", data={"kind": "dynamic",
                                               "lab_id": aworld.labs["r1"].id,
                                               "cmp": saved, "ttl_days": "7"})
    assert resp.status_code in (200, 302), resp.get_data(as_text=True)[:400]
    page = client.get(resp.headers["Location"]) if resp.status_code == 302 else resp
    html = page.get_data(as_text=True)
    token_url = next(part.split('"')[0] for part in html.split('href="')[1:]
                     if "/r/" in part.split('"')[0])
    client.post("/logout")
    shared = client.get(token_url[token_url.index("/r/"):])
    assert shared.status_code == 200 and "仪器比对：" in shared.get_data(as_text=True)


@pytest.mark.parametrize("kind", ["dynamic", "evaluation"])
def test_reports_link_the_analytics_pages_of_their_lab(aworld, login, kind):
    lab = aworld.labs["r1"]
    html = login(aworld.users["tech_r1"]).get(f"/reports/labs/{lab.id}/{kind}").get_data(
        as_text=True)
    assert f"/analytics/sigma/lab/{lab.id}" in html and f"/analytics/periods?lab={lab.id}" in html
