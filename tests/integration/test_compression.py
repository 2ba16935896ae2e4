"""Compression (brotli/gzip for text) and long-lived, versioned static files."""

from __future__ import annotations

import gzip
import io
import re

import brotli
import pytest
from flask import Flask, Response, send_file, url_for

from qcwx.config import PROJECT_ROOT
from qcwx.extensions import STATIC_CACHE_CONTROL, init_compression, init_static_caching
from tests.wechat.wx import reply_fields, sample, signed_query

ECHARTS = PROJECT_ROOT / "static" / "vendor" / "echarts.min.js"
DECODE = {"br": brotli.decompress, "gzip": gzip.decompress}


def get(client, path, encoding, **kw):
    return client.get(path, headers={"Accept-Encoding": encoding}, **kw)


@pytest.mark.parametrize("encoding", ["br", "gzip"])
def test_echarts_is_served_compressed_to_under_a_third(client, encoding):
    raw = ECHARTS.read_bytes()
    for _ in range(2):  # the second answer comes from the compressed-file cache
        resp = get(client, "/static/vendor/echarts.min.js", encoding)
        assert resp.status_code == 200
        assert resp.headers["Content-Encoding"] == encoding
        assert "Accept-Encoding" in resp.headers["Vary"]
        body = resp.get_data()
        assert int(resp.headers["Content-Length"]) == len(body) < len(raw) / 3
        assert DECODE[encoding](body) == raw


def test_the_client_preference_picks_brotli_over_gzip(client):
    resp = get(client, "/static/vendor/echarts.min.js", "gzip, deflate, br, zstd")
    assert resp.headers["Content-Encoding"] == "br"


def test_identity_gets_the_file_as_it_is(client):
    raw = ECHARTS.read_bytes()
    for accept in ("identity", ""):
        resp = get(client, "/static/vendor/echarts.min.js", accept)
        assert "Content-Encoding" not in resp.headers
        assert resp.get_data() == raw


def test_pages_are_compressed(client):
    plain = get(client, "/login?password=1", "identity")
    assert plain.status_code == 200 and plain.mimetype == "text/html"
    assert "Content-Encoding" not in plain.headers and len(plain.get_data()) > 500
    for encoding, decode in DECODE.items():
        resp = get(client, "/login?password=1", encoding)
        assert resp.headers["Content-Encoding"] == encoding
        html = decode(resp.get_data()).decode("utf-8")
        assert "登录" in html and len(resp.get_data()) < len(plain.get_data())


def test_css_and_svg_over_500_bytes_are_compressed_smaller_ones_are_not(client):
    css = get(client, "/static/css/app.css", "gzip")
    assert css.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(css.get_data()) == (PROJECT_ROOT / "static/css/app.css").read_bytes()
    icon = get(client, "/static/favicon.svg", "br")
    assert len(icon.get_data()) < 500 and "Content-Encoding" not in icon.headers
    small = get(client, "/healthz", "br")
    assert small.status_code == 200 and small.is_json and "Content-Encoding" not in small.headers


def test_a_range_request_gets_plain_partial_content(client):
    resp = client.get("/static/vendor/echarts.min.js",
                      headers={"Accept-Encoding": "br", "Range": "bytes=0-99"})
    assert resp.status_code == 206 and "Content-Encoding" not in resp.headers
    assert resp.get_data() == ECHARTS.read_bytes()[:100]


def test_wechat_callback_xml_is_never_compressed(client, app):
    assert not {"application/xml", "text/xml", "text/plain"} & set(app.config["COMPRESS_MIMETYPES"])
    token = app.config["WECHAT_TOKEN"]
    resp = client.post("/wechat", query_string=signed_query(token),
                       data=sample("text_message.xml", Content="帮助").encode(),
                       content_type="text/xml", headers={"Accept-Encoding": "gzip, br"})
    assert resp.status_code == 200 and "Content-Encoding" not in resp.headers
    if resp.mimetype == "application/xml":
        assert reply_fields(resp.get_data(as_text=True))["MsgType"] == "text"
    else:
        assert resp.get_data(as_text=True) == "success"
    echo = client.get("/wechat", query_string=signed_query(token, echostr="e" * 600),
                      headers={"Accept-Encoding": "gzip, br"})
    assert echo.get_data(as_text=True) == "e" * 600 and "Content-Encoding" not in echo.headers


# -- static URLs carry their version and are cached for a year ----------------------------
def test_static_urls_carry_a_content_version_and_are_cached_for_a_year(app, client):
    with app.test_request_context():
        url = url_for("static", filename="vendor/echarts.min.js")
        missing = url_for("static", filename="vendor/nothing.js")
    assert re.fullmatch(r"/static/vendor/echarts\.min\.js\?v=[0-9a-f]{12}", url)
    assert missing == "/static/vendor/nothing.js"
    resp = get(client, url, "br")
    assert resp.headers["Cache-Control"] == STATIC_CACHE_CONTROL
    assert resp.headers["Content-Encoding"] == "br"
    unversioned = get(client, "/static/vendor/echarts.min.js", "br")
    stale = get(client, "/static/vendor/echarts.min.js?v=000000000000", "br")
    for resp in (unversioned, stale):
        assert "immutable" not in resp.headers.get("Cache-Control", "")


def test_pages_reference_versioned_static_files(login, world):
    html = login(world.users["technician"]).get("/").get_data(as_text=True)
    assert re.search(r'/static/[^"]+\?v=[0-9a-f]{12}"', html)


def test_a_compressed_static_file_revalidates_to_304(client):
    first = get(client, "/static/vendor/echarts.min.js", "gzip")
    etag = first.headers["ETag"]
    assert etag.endswith(':gzip"')
    again = client.get("/static/vendor/echarts.min.js",
                       headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b""


# -- streamed responses pass untouched ---------------------------------------------------
@pytest.fixture
def streaming_app(tmp_path):
    """A bare app with the same compression: a generator page and a file download."""
    flask_app = Flask(__name__, static_folder=str(PROJECT_ROOT / "static"))
    init_compression(flask_app)
    init_static_caching(flask_app)
    big = tmp_path / "big.html"
    big.write_text("<p>报告</p>" * 500, encoding="utf-8")

    @flask_app.get("/stream")
    def stream():
        return Response((f"<p>第 {i} 行</p>" for i in range(500)), mimetype="text/html")

    @flask_app.get("/download")
    def download():
        return send_file(big, mimetype="text/html", as_attachment=True)

    @flask_app.get("/xlsx")
    def xlsx():
        return send_file(io.BytesIO(b"PK" + b"\0" * 5000), as_attachment=True,
                         download_name="r.xlsx")

    return flask_app


def test_streamed_pages_and_downloads_are_not_compressed(streaming_app, tmp_path):
    client = streaming_app.test_client()
    streamed = get(client, "/stream", "br")
    assert streamed.is_streamed and "Content-Encoding" not in streamed.headers
    assert streamed.get_data(as_text=True).count("<p>") == 500
    download = get(client, "/download", "gzip, br")
    assert "Content-Encoding" not in download.headers
    assert download.get_data() == (tmp_path / "big.html").read_bytes()
    xlsx = get(client, "/xlsx", "gzip, br")
    assert "Content-Encoding" not in xlsx.headers and xlsx.get_data().startswith(b"PK")
    static = get(client, "/static/vendor/echarts.min.js", "br")
    assert static.headers["Content-Encoding"] == "br"
