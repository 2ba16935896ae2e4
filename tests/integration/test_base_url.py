"""Links work wherever the app runs: the base URL follows the request in development.

``PORT=8000 make run``, a phone on the LAN or a tunnel: QR labels, the WeChat OAuth return
address, invite links and the JS-SDK signature all use the address the request came in on.
Production uses ``QCWX_BASE_URL`` only (required at start-up; a Host header is not trusted).
"""

from __future__ import annotations

import re

import pytest
from flask import Flask

from qcwx.labels import services as labels
from qcwx.web.urls import base_url
from qcwx.wechat import services as wechat

HOST = "http://192.168.1.23:8000"


@pytest.fixture
def dev(app) -> Flask:
    """The test app, switched to development (no BASE_URL) for this test only."""
    saved = dict(app.config)
    app.config.update(ENV="development", BASE_URL=None)
    yield app
    app.config.clear()
    app.config.update(saved)


def test_development_links_follow_the_request_host(dev, world):
    with dev.test_request_context("/", base_url=HOST):
        assert base_url() == HOST
        assert labels.label_url(world.systems["a"]).startswith(f"{HOST}/s/")
        assert wechat.callback_url() == f"{HOST}/wechat/oauth/callback"
        assert wechat.bind_url("abc") == f"{HOST}/wechat/bind?code=abc"
        assert wechat.check_page_url(f"{HOST}/ts/1?channel=scan#top") == f"{HOST}/ts/1?channel=scan"


def test_development_follows_the_request_even_with_a_configured_base_url(dev):
    dev.config["BASE_URL"] = "http://127.0.0.1:5000"
    with dev.test_request_context("/", base_url=HOST):
        assert base_url() == HOST
    with dev.app_context():  # a worker or the CLI: no request, the configured address
        assert base_url() == "http://127.0.0.1:5000"


def test_production_never_trusts_the_host_header(app):
    saved = dict(app.config)
    app.config.update(ENV="production", BASE_URL="https://qc.example.cn/")
    try:
        with app.test_request_context("/", base_url="http://evil.example"):
            assert base_url() == "https://qc.example.cn"
            with pytest.raises(Exception, match="qc.example.cn"):
                wechat.check_page_url("http://evil.example/ts/1")
    finally:
        app.config.clear()
        app.config.update(saved)


def test_the_printed_label_sheet_and_the_oauth_redirect_use_the_port_asked_on(dev, world, login):
    client = login(world.users["supervisor"])
    ts = world.systems["a"]
    sheet = client.get(f"/labs/{ts.lab_id}/labels", base_url=HOST)
    assert sheet.status_code == 200
    assert re.search(f'data-url="{re.escape(HOST)}/s/', sheet.get_data(as_text=True))
    client.post("/logout", base_url=HOST)
    resp = client.get("/wechat/oauth/start?next=/", base_url=HOST)
    assert resp.status_code == 302
    assert "redirect_uri=http%3A%2F%2F192.168.1.23%3A8000%2Fwechat%2Foauth%2Fcallback" in \
        resp.headers["Location"]


def test_no_request_and_no_base_url_is_a_clear_error_not_a_guessed_host(dev):
    from qcwx.errors import ConfigError

    with dev.app_context(), pytest.raises(ConfigError, match="QCWX_BASE_URL"):
        base_url()
