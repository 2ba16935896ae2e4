"""Share links: hashed tokens, scope, expiry, revocation, views, and the public page."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from qcwx.extensions import db
from qcwx.reports import services
from qcwx.reports.models import ShareLink
from qcwx.timeutil import local_today, utcnow


def _link(world, *, user="supervisor", kind="dynamic", ttl=30):
    params = {"ts_ids": None, "period": {"kind": "this_month"}} if kind == "dynamic" else {
        "month": local_today().strftime("%Y-%m")}
    created = services.share_report(world.users[user] if user else None, world.lab_a, kind,
                                    params, str(ttl), local_today())
    db.session.commit()
    return created


def _url_token(html: str) -> str:
    match = re.search(r'id="share-url">\s*(http[^<\s]+/r/([A-Za-z0-9_\-]+))', html)
    assert match, html[:2000]
    return match.group(2)


def test_only_the_hash_of_a_token_is_stored(world):
    created = _link(world)
    row = db.session.get(ShareLink, created.link.id)
    assert row.token_hash == hashlib.sha256(created.token.encode()).hexdigest()
    assert len(created.token) >= 32
    stored = " ".join(str(getattr(row, c.key)) for c in ShareLink.__table__.columns)
    assert created.token not in stored


def test_the_shared_page_opens_without_login_and_counts_each_view(world, client):
    created = _link(world)
    for expected_views in (1, 2):
        res = client.get(created.path)
        assert res.status_code == 200
        html = res.get_data(as_text=True)
        assert world.lab_a.full_name in html and "动态质控报告" in html
        assert res.headers["Cache-Control"] == "private, no-store"
        db.session.expire_all()
        assert db.session.get(ShareLink, created.link.id).view_count == expected_views
    # The share card's text is on the page for the JS-SDK.
    assert 'id="share-card"' in html and 'data-title="' in html


def test_a_share_link_shows_nothing_of_other_labs(world, client):
    created = _link(world)
    html = client.get(created.path).get_data(as_text=True)
    for other in (world.lab_b, world.lab_c):
        assert other.name not in html or other.name == world.lab_a.name
        assert other.hospital.name not in html


@pytest.mark.parametrize("how, status, message", [
    ("expired", 410, "已过期"),
    ("revoked", 410, "已被撤销"),
])
def test_an_ended_link_shows_a_chinese_page_and_no_data(world, client, how, status, message):
    created = _link(world)
    row = db.session.get(ShareLink, created.link.id)
    if how == "expired":
        row.expires_at = utcnow() - timedelta(seconds=1)
    else:
        row.revoked_at = utcnow()
    db.session.commit()
    for path in (created.path, created.path + ".xlsx", created.path + ".pdf"):
        res = client.get(path)
        assert res.status_code == status, path
        html = res.get_data(as_text=True)
        assert message in html
        assert world.lab_a.full_name not in html and "rp-table" not in html


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),   # one character changed
    lambda t: t[:-3],                                      # cut short
    lambda t: "x" * 400,                                   # absurdly long
    lambda t: t + "%00",                                   # a NUL byte
    lambda t: "%E2%91%A0" * 8,                             # non-ASCII
])
def test_a_tampered_token_is_a_404_page_never_a_500(world, client, mangle):
    created = _link(world)
    res = client.get("/r/" + mangle(created.token))
    assert res.status_code == 404
    html = res.get_data(as_text=True)
    assert "链接无效" in html and world.lab_a.full_name not in html


def test_a_supervisor_shares_from_the_report_page_and_sees_the_link_once(world, login):
    client = login(world.users["supervisor"])
    res = client.post("/reports/share", data={
        "kind": "dynamic", "lab_id": str(world.lab_a.id), "period": "this_month",
        "ttl_days": "7"})
    assert res.status_code == 302
    page = client.get(res.headers["Location"])
    html = page.get_data(as_text=True)
    token = _url_token(html)
    assert "<svg" in html  # the QR code of the link
    # Shown once: coming back later lists the links instead of the token.
    again = client.get(res.headers["Location"])
    assert again.status_code == 302 and again.headers["Location"].endswith("/reports/links")
    link = db.session.scalar(select(ShareLink).where(
        ShareLink.token_hash == services.hash_token(token)))
    assert link.created_by_id == world.users["supervisor"].id
    assert timedelta(days=6, hours=23) < link.expires_at - link.created_at <= timedelta(days=7)
    listing = client.get("/reports/links").get_data(as_text=True)
    assert f'id="link-{link.id}"' in listing and 'data-state="live"' in listing


def test_nobody_shares_or_revokes_outside_their_scope(world, login):
    created = _link(world)
    client = login(world.users["technician_b"])
    res = client.post("/reports/share", data={"kind": "dynamic", "lab_id": str(world.lab_a.id),
                                              "period": "this_month", "ttl_days": "7"})
    assert res.status_code == 404
    assert client.post(f"/reports/links/{created.link.id}/revoke").status_code == 404
    assert client.get(f"/reports/labs/{world.lab_a.id}/dynamic").status_code == 404
    # The region's centre may revoke a link of one of its labs; the other region's may not.
    client = login(world.users["center2"])
    assert client.post(f"/reports/links/{created.link.id}/revoke").status_code == 404
    client = login(world.users["center"])
    assert client.post(f"/reports/links/{created.link.id}/revoke").status_code == 302
    assert client.get(created.path).status_code == 410


def test_the_creator_revokes_a_link(world, login):
    created = _link(world)
    client = login(world.users["supervisor"])
    assert client.post(f"/reports/links/{created.link.id}/revoke").status_code == 302
    assert client.get(created.path).status_code == 410
    listing = client.get("/reports/links").get_data(as_text=True)
    assert 'data-state="revoked"' in listing


@pytest.mark.parametrize("ttl, field_text", [("²", "有效期"), ("0", "有效期"), ("5", "有效期"),
                                             ("99999999999999999999", "有效期")])
def test_a_bad_lifetime_is_a_400_naming_the_field(world, login, ttl, field_text):
    client = login(world.users["supervisor"])
    res = client.post("/reports/share", data={"kind": "dynamic", "lab_id": str(world.lab_a.id),
                                              "period": "this_month", "ttl_days": ttl})
    assert res.status_code == 400
    assert field_text in res.get_data(as_text=True)
    assert db.session.scalar(select(ShareLink)) is None


@pytest.mark.parametrize("data", [
    {"kind": "weekly"}, {"lab_id": "²"}, {"lab_id": "99999999999999999999999"},
    {"period": "fortnight"}, {"period": "days", "days": "0"}, {"period": "days", "days": "10000"},
    {"period": "range", "start": "2026-13-01", "end": "2026-12-01"},
    {"ts": "abc"},
])
def test_bad_share_arguments_are_4xx_never_500(world, login, data):
    client = login(world.users["supervisor"])
    form = {"kind": "dynamic", "lab_id": str(world.lab_a.id), "period": "this_month",
            "ttl_days": "7", **data}
    res = client.post("/reports/share", data=form)
    assert 400 <= res.status_code < 500


def test_the_share_command_prints_a_working_url(world, app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reports", "share", "--kind", "dynamic", "--lab", world.lab_a.code,
                                 "--days", "30"])
    assert result.exit_code == 0, result.output
    url = result.output.strip().splitlines()[-1]
    assert url.startswith(app.config["BASE_URL"].rstrip("/") + "/r/")
    res = client.get(url.split("://", 1)[1].split("/", 1)[1].join(["/", ""]))
    assert res.status_code == 200 and "最近30天" in res.get_data(as_text=True)
    bad = runner.invoke(args=["reports", "share", "--kind", "dynamic", "--lab", "nope"])
    assert bad.exit_code != 0


def test_is_share_page_accepts_only_live_links(world):
    created = _link(world)
    assert services.is_share_page(f"http://qc.example.cn{created.path}#x")
    assert not services.is_share_page("http://qc.example.cn/r/" + "A" * 32)
    assert not services.is_share_page(f"http://qc.example.cn/ts/1{created.path}")
    created.link.revoked_at = utcnow()
    db.session.commit()
    assert not services.is_share_page(f"http://qc.example.cn{created.path}")
