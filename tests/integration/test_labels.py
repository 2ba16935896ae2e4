"""QR labels: signed tokens, revocation, scope, the label sheet and the photo decoder."""

from __future__ import annotations

import io
import re
import zlib
from urllib.parse import quote

import numpy as np
import pytest
import qrcode
import zxingcpp
from flask import current_app
from itsdangerous import URLSafeSerializer
from PIL import Image, ImageChops, ImageDraw, ImageFilter
from sqlalchemy import select

from qcwx.audit.models import AuditLog
from qcwx.catalog.models import TestSystem
from qcwx.errors import NotFound
from qcwx.labels import services
from qcwx.web.urls import base_url
from tests import factories as f
from tests.factories import PASSWORD

JSON = {"Accept": "application/json"}


# ---------------------------------------------------------------- helpers
def photo_of(*texts: str, angle: float = 15.0, blur: float = 1.4, noise: int = 24,
             quality: int = 50, module: int = 7) -> bytes:
    """Return a phone-photo-like JPEG of paper labels carrying ``texts`` as QR codes.

    Each label is a white card on a grey desk; the scene is rotated, lit unevenly, blurred,
    given sensor noise and JPEG-compressed, as a hurried photo in a lab would be.
    """
    cards = []
    for text in texts:
        code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_Q, border=4,
                             box_size=module)
        code.add_data(text)
        code.make(fit=True)
        img = code.make_image().get_image().convert("L")
        card = Image.new("L", (img.width + 40, img.height + 90), 250)
        card.paste(img, (20, 20))
        ImageDraw.Draw(card).rectangle((30, img.height + 35, card.width - 30, img.height + 50),
                                       fill=60)  # the printed text under the code
        cards.append(card)
    width = max((c.width for c in cards), default=300)
    height = max((c.height for c in cards), default=400)
    scene = Image.new("L", (width * (len(cards) * 2 + 1), height * 2), 150)
    for i, card in enumerate(cards):
        scene.paste(card, (width * (2 * i + 1), height // 2))
    scene = scene.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=140)
    light = Image.linear_gradient("L").resize(scene.size).point(lambda v: 150 + v * 105 // 255)
    scene = ImageChops.multiply(scene, light).filter(ImageFilter.GaussianBlur(blur))
    # Sensor noise seeded by the photo's content: Pillow's effect_noise draws from C's
    # rand(), so the same label made a different photo on every run.
    rng = np.random.default_rng(zlib.crc32("|".join(texts).encode()))
    grain = rng.normal(128, noise, (scene.height, scene.width)).clip(0, 255).astype(np.uint8)
    scene = ImageChops.add(scene, Image.fromarray(grain), 1.0, -128)
    out = io.BytesIO()
    scene.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def svg_to_image(svg: str, scale: int = 6) -> Image.Image:
    """Rasterise the run-length SVG ``qr_svg`` writes (a check of what the sheet embeds)."""
    size = int(re.search(r'viewBox="0 0 (\d+) \d+"', svg).group(1))
    img = Image.new("L", (size * scale, size * scale), 255)
    draw = ImageDraw.Draw(img)
    for x, y, w in re.findall(r"M(\d+) (\d+)h(\d+)v1", svg):
        x, y, w = int(x), int(y), int(w)
        draw.rectangle((x * scale, y * scale, (x + w) * scale - 1, (y + 1) * scale - 1), fill=0)
    return img


def decoded(img: Image.Image) -> list[str]:
    return [b.text for b in zxingcpp.read_barcodes(img)]


def tamper(token: str) -> str:
    """Change one full-width character in the middle of the signature."""
    payload, sig = token.split(".")
    return f"{payload}.{sig[:5]}{'A' if sig[5] != 'A' else 'B'}{sig[6:]}"


def token_of(ts: TestSystem) -> str:
    return services.make_token(ts)


def post_photo(client, data: bytes, headers=JSON):
    return client.post("/labels/decode", data={"image": (io.BytesIO(data), "photo.jpg")},
                       headers=headers, content_type="multipart/form-data")


# ---------------------------------------------------------------- tokens
def test_token_round_trips_test_system_and_label_version(session, world):
    ts = world.systems["a"]
    token = services.make_token(ts)
    assert services.read_token(token) == (ts.id, ts.label_version)
    assert len(token.split(".")[1]) >= 27  # a full 160-bit HMAC: not guessable
    other = services.make_token(world.systems["b"])
    assert other.split(".")[1] != token.split(".")[1]
    url = services.label_url(ts)
    assert url == f"{base_url()}/s/{token}"


@pytest.mark.parametrize("make_bad", [
    lambda tok: tamper(tok),
    lambda tok: (URLSafeSerializer("k", salt="x").dumps([99999, 1]).split(".")[0]
                 + "." + tok.split(".")[1]),
    lambda tok: URLSafeSerializer("guessed-secret", salt=services.TOKEN_SALT).dumps([1, 1]),
    lambda tok: URLSafeSerializer(current_app.config["SECRET_KEY"],
                                  salt="other-purpose").dumps([1, 1]),
    lambda tok: URLSafeSerializer(current_app.config["SECRET_KEY"],
                                  salt=services.TOKEN_SALT).dumps({"ts": 1}),
    lambda tok: URLSafeSerializer(current_app.config["SECRET_KEY"],
                                  salt=services.TOKEN_SALT).dumps([True, 1]),
    lambda tok: "not-a-token",
    lambda tok: "%E4%B8%AD.%FF",
], ids=["tampered", "spliced", "wrong-secret", "other-salt", "dict-payload", "bool-id",
        "garbage", "non-ascii"])
def test_forged_or_tampered_label_is_a_chinese_404(world, login, make_bad):
    client = login(world.users["technician"])
    bad = make_bad(token_of(world.systems["a"]))
    with pytest.raises(NotFound):
        services.read_token(bad)
    resp = client.get(f"/s/{bad}")
    assert resp.status_code == 404
    assert "不是本平台的质控标签" in resp.get_data(as_text=True)


def test_signing_payload_must_match_a_real_test_system(world, login):
    client = login(world.users["admin"])
    ghost = URLSafeSerializer(current_app.config["SECRET_KEY"],
                              salt=services.TOKEN_SALT).dumps([987654, 1])
    assert client.get(f"/s/{ghost}").status_code == 404


# ---------------------------------------------------------------- scan landing
def test_scanned_label_lands_on_entry_page_with_scan_channel(world, login):
    ts = world.systems["a"]
    client = login(world.users["technician"])
    resp = client.get(f"/s/{token_of(ts)}")
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/ts/{ts.id}?channel=scan"
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert f'data-api="/api/ts/{ts.id}/runs?channel=scan"' in page  # the route's channel
    assert "js/scan.js" in page


def test_anonymous_scanner_logs_in_and_comes_back_to_the_label(world, client, session):
    ts = world.systems["a"]
    token = token_of(ts)
    resp = client.get(f"/s/{token}")
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/login?next={quote(f'/s/{token}', safe='')}"
    login = client.post(resp.headers["Location"],
                        data={"username": world.users["technician"].username,
                              "password": PASSWORD})
    assert login.status_code == 302 and login.headers["Location"] == f"/s/{token}"
    assert client.get(f"/s/{token}").headers["Location"] == f"/ts/{ts.id}?channel=scan"


@pytest.mark.parametrize("role,key,status", [
    ("technician_b", "a", 404), ("technician", "b", 404), ("director", "b", 404),
    ("center2", "a", 404), ("center", "b", 302), ("admin", "c", 302), ("supervisor", "a", 302),
])
def test_label_outside_scope_is_404_like_everything_else(world, login, role, key, status):
    client = login(world.users[role])
    resp = client.get(f"/s/{token_of(world.systems[key])}")
    assert resp.status_code == status
    if status == 404:
        assert "无权访问" in resp.get_data(as_text=True)


# ---------------------------------------------------------------- revocation
@pytest.mark.parametrize("role", ["supervisor", "director", "center", "admin"])
def test_regenerating_a_label_voids_the_printed_one(world, login, session, role):
    ts = world.systems["a"]
    old = token_of(ts)
    client = login(world.users[role])
    resp = client.post(f"/labels/ts/{ts.id}/regenerate")
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/labs/{ts.lab_id}/labels#ts-{ts.id}"
    session.refresh(ts)
    assert ts.label_version == 2
    revoked = client.get(f"/s/{old}")
    assert revoked.status_code == 410
    assert "标签已失效，请重新打印" in revoked.get_data(as_text=True)
    assert client.get(f"/s/{token_of(ts)}").headers["Location"] == f"/ts/{ts.id}?channel=scan"
    audit = session.scalars(select(AuditLog).where(
        AuditLog.entity == "test_system", AuditLog.entity_id == str(ts.id),
        AuditLog.action == "update")).all()
    assert any(a.changes.get("label_version") == [1, 2]
               and a.actor_id == world.users[role].id for a in audit)


def test_a_second_regeneration_voids_the_first_reprint_too(world, login, session):
    ts = world.systems["a"]
    client = login(world.users["supervisor"])
    client.post(f"/labels/ts/{ts.id}/regenerate")
    session.refresh(ts)
    reprint = token_of(ts)
    client.post(f"/labels/ts/{ts.id}/regenerate")
    session.refresh(ts)
    assert ts.label_version == 3
    assert client.get(f"/s/{reprint}").status_code == 410


def test_technician_may_not_regenerate_labels(world, login, session):
    ts = world.systems["a"]
    client = login(world.users["technician"])
    resp = client.post(f"/labels/ts/{ts.id}/regenerate")
    assert resp.status_code == 403
    assert "无权" in resp.get_data(as_text=True)
    session.refresh(ts)
    assert ts.label_version == 1


def test_regenerating_another_labs_label_is_404(world, login, session):
    ts = world.systems["b"]
    client = login(world.users["supervisor"])
    assert client.post(f"/labels/ts/{ts.id}/regenerate").status_code == 404
    session.refresh(ts)
    assert ts.label_version == 1


def test_revoked_label_outside_scope_stays_404(world, login, session):
    """A stranger must not learn that a label was revoked (existence is not revealed)."""
    ts = world.systems["a"]
    old = token_of(ts)
    login(world.users["supervisor"]).post(f"/labels/ts/{ts.id}/regenerate")
    client = login(world.users["technician_b"])
    assert client.get(f"/s/{old}").status_code == 404


def test_label_of_a_retired_test_system_is_void(world, login, session):
    ts = world.systems["a"]
    token = token_of(ts)
    ts.active = False
    session.commit()
    client = login(world.users["technician"])
    resp = client.get(f"/s/{token}")
    assert resp.status_code == 410
    assert "已停用" in resp.get_data(as_text=True)
    assert client.get(f"/labels/ts/{ts.id}/qr.png").status_code == 410


# ---------------------------------------------------------------- label sheet
def _second_and_retired(world, session):
    lot = f.qc_lot(3)
    alt = f.analyte("TC", "总胆固醇", "mmol/L")
    extra = f.test_system(world.lab_a, alt, lot, maker="Beckman", model="AU5800")
    retired = f.test_system(world.lab_a, alt, lot, maker="Mindray", model="BS-2000M")
    retired.active = False
    session.commit()
    return extra, retired


def test_sheet_lists_exactly_the_labs_active_test_systems(world, login, session):
    extra, retired = _second_and_retired(world, session)
    client = login(world.users["technician"])
    resp = client.get(f"/labs/{world.lab_a.id}/labels")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    listed = [int(x) for x in re.findall(r'class="lbl" id="ts-\d+" data-ts="(\d+)"', html)]
    assert sorted(listed) == sorted([world.systems["a"].id, extra.id])
    assert len(listed) == len(set(listed)) == html.count('<svg xmlns="http://www.w3.org/2000/svg"')
    assert world.lab_a.full_name in html
    for ts in (world.systems["a"], extra):
        assert f'data-url="{services.label_url(ts)}"' in html
    assert "总胆固醇" in html and "Beckman AU5800" in html and "水平1、水平2、水平3" in html
    assert f"批号 {extra.qc_lot.lot_number}" in html
    assert "Mindray" not in html  # the retired one
    assert "@media print" in client.get("/static/css/labels.css").get_data(as_text=True)


def test_sheet_qr_codes_decode_to_the_label_urls(world, session):
    extra, _ = _second_and_retired(world, session)
    sheet = services.label_sheet(world.users["supervisor"], world.lab_a.id)
    assert [i.test_system_id for i in sheet.items] == sorted(
        [world.systems["a"].id, extra.id],
        key=lambda i: session.get(TestSystem, i).analyte.code)
    for item in sheet.items:
        assert decoded(svg_to_image(str(item.svg))) == [item.url]


@pytest.mark.parametrize("role,key,status", [
    ("technician", "a", 200), ("technician", "b", 404), ("supervisor", "b", 404),
    ("director", "a", 200), ("director", "b", 404), ("center", "b", 200), ("center", "c", 404),
    ("center2", "c", 200), ("admin", "c", 200),
])
def test_sheet_is_scope_checked(world, login, role, key, status):
    lab = {"a": world.lab_a, "b": world.lab_b, "c": world.lab_c}[key]
    client = login(world.users[role])
    assert client.get(f"/labs/{lab.id}/labels").status_code == status


def test_sheet_offers_regeneration_only_to_those_who_may(world, login):
    path = f"/labs/{world.lab_a.id}/labels"
    assert "作废并重新生成" not in login(world.users["technician"]).get(path).get_data(True)
    assert "作废并重新生成" in login(world.users["supervisor"]).get(path).get_data(True)


def test_label_png_decodes_to_the_label_url(world, login):
    ts = world.systems["a"]
    client = login(world.users["technician"])
    resp = client.get(f"/labels/ts/{ts.id}/qr.png")
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    assert decoded(Image.open(io.BytesIO(resp.data))) == [services.label_url(ts)]
    assert client.get(f"/labels/ts/{world.systems['b'].id}/qr.png").status_code == 404


def test_labels_index_sends_a_lab_user_to_their_sheet_and_lists_labs_for_the_centre(
        world, login):
    resp = login(world.users["technician"]).get("/labels")
    assert resp.status_code == 302 and resp.headers["Location"] == f"/labs/{world.lab_a.id}/labels"
    html = login(world.users["center"]).get("/labels").get_data(as_text=True)
    assert f"/labs/{world.lab_a.id}/labels" in html and f"/labs/{world.lab_b.id}/labels" in html
    assert f"/labs/{world.lab_c.id}/labels" not in html


# ---------------------------------------------------------------- photo decoding
def test_rotated_blurred_jpeg_photo_of_a_label_is_decoded(world, login):
    ts = world.systems["a"]
    photo = photo_of(services.label_url(ts))
    assert Image.open(io.BytesIO(photo)).format == "JPEG"
    client = login(world.users["technician"])
    resp = post_photo(client, photo)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"url": f"/ts/{ts.id}?channel=scan"}


def test_large_phone_photo_is_scaled_down_and_decoded(world, login):
    ts = world.systems["a"]
    photo = photo_of(services.label_url(ts), angle=-12, module=20, blur=2.5)
    assert max(Image.open(io.BytesIO(photo)).size) > services.DECODE_MAX_SIDE
    resp = post_photo(login(world.users["technician"]), photo)
    assert resp.get_json() == {"url": f"/ts/{ts.id}?channel=scan"}


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:5000/s/W374.b8oYsfroDrsehrD50AlpcZRzAQY",
    "http://127.0.0.1:5000/s/W343.FAB1hgxTrAsWdl4BA3VyQC9fHRL",
    "http://127.0.0.1:5000/s/W477.hPF-2sgNOf0C4sjc_84I99aREvl"])
def test_a_blurred_photo_missed_at_full_size_is_read_at_three_quarters(url):
    """Regression (a CI failure: a plain form post of a photo answered 400): both
    thresholds missed about 1 in 2,500 of these photos, and a quarter of those blurred a
    little more (blur 2.2: 96 of 400; with the 3/4-size attempt 8 of 400)."""
    assert services.decode_image(photo_of(url, blur=2.2)) == [url]


def test_plain_form_post_of_a_photo_redirects_to_the_entry_page(world, login):
    ts = world.systems["a"]
    resp = post_photo(login(world.users["technician"]), photo_of(services.label_url(ts)),
                      headers={})
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/ts/{ts.id}?channel=scan"


def test_label_printed_with_the_request_host_is_accepted(world, login):
    """A sheet printed while BASE_URL was the host the phone uses (no proxy) still scans."""
    ts = world.systems["a"]
    url = f"http://localhost/s/{token_of(ts)}"
    resp = post_photo(login(world.users["technician"]), photo_of(url))
    assert resp.get_json() == {"url": f"/ts/{ts.id}?channel=scan"}


def test_photo_without_a_qr_code_is_a_chinese_400(world, login):
    resp = post_photo(login(world.users["technician"]), photo_of())
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "未识别到二维码，请对准标签、保持清晰后重新拍照",
                               "field": "image"}


@pytest.mark.parametrize("text", [
    "https://weixin.qq.com/r/abcdefg",
    "http://127.0.0.1:5000/ts/1",
    "https://evil.example.com/s/{token}",
    "6901234567892",
], ids=["wechat-link", "our-origin-other-path", "foreign-origin-our-token", "plain-text"])
def test_photo_of_some_other_qr_code_is_a_chinese_400(world, login, text):
    text = text.format(token=token_of(world.systems["a"]))
    resp = post_photo(login(world.users["technician"]), photo_of(text))
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "不是本平台的质控标签"


def test_photo_of_a_forged_label_is_a_chinese_400(world, login):
    forged = URLSafeSerializer("guessed", salt=services.TOKEN_SALT).dumps([1, 1])
    url = f"{base_url()}/s/{forged}"
    resp = post_photo(login(world.users["technician"]), photo_of(url))
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "不是本平台的质控标签"


def test_photo_of_a_revoked_label_says_so(world, login, session):
    ts = world.systems["a"]
    old_url = services.label_url(ts)
    client = login(world.users["supervisor"])
    client.post(f"/labels/ts/{ts.id}/regenerate")
    resp = post_photo(client, photo_of(old_url))
    assert resp.status_code == 410
    assert resp.get_json()["error"] == "标签已失效，请重新打印"


def test_photo_of_another_labs_label_is_404(world, login):
    resp = post_photo(login(world.users["technician_b"]),
                      photo_of(services.label_url(world.systems["a"])))
    assert resp.status_code == 404
    assert "无权访问" in resp.get_json()["error"]


def test_photo_with_two_different_labels_is_refused(world, login):
    other = f.test_system(world.lab_a, f.analyte(), f.qc_lot(2))
    client = login(world.users["technician"])
    resp = post_photo(client, photo_of(services.label_url(world.systems["a"]),
                                       services.label_url(other)))
    assert resp.status_code == 400
    assert "多个质控标签" in resp.get_json()["error"]


@pytest.mark.parametrize("payload,message", [
    (b"", "请选择要识别的照片"),
    (b"this is not an image", "无法读取该图片"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "无法读取该图片"),
])
def test_missing_or_unreadable_upload_is_a_chinese_400(world, login, payload, message):
    resp = post_photo(login(world.users["technician"]), payload)
    assert resp.status_code == 400
    assert message in resp.get_json()["error"] and resp.get_json()["field"] == "image"


def test_upload_without_a_file_field_is_a_chinese_400(world, login):
    resp = login(world.users["technician"]).post("/labels/decode", headers=JSON)
    assert resp.status_code == 400 and resp.get_json()["error"] == "请选择要识别的照片"


def test_plain_form_error_rerenders_the_scan_page_in_chinese(world, login):
    resp = post_photo(login(world.users["technician"]), photo_of(), headers={})
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert 'id="scan-error"' in html and "未识别到二维码" in html


def test_decoding_requires_login(world, client):
    resp = post_photo(client, photo_of(services.label_url(world.systems["a"])), headers={})
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")


def test_scan_page_offers_the_scan_button(world, login):
    html = login(world.users["technician"]).get("/scan").get_data(as_text=True)
    assert 'id="scan-btn"' in html and "js/scan.js" in html and "<noscript>" in html
