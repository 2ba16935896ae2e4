"""The public base URL of links that leave the page: QR labels, WeChat, invites, alerts.

Production: ``QCWX_BASE_URL``, required at start-up (a Host header is never trusted there).
Development: the address the request came in on, so ``PORT=8000 make run``, a phone on the
LAN or a tunnel all get links that work; outside a request (workers, CLI) the configured
value, which ``make run`` sets from ``PORT`` (with neither, a link cannot be made: an error
names the variable rather than guessing a host). Testing: the configured value when set.
Alert messages go to other people's phones, whichever process sends them, so they use the
configured value whenever there is one (``shared=True``).
"""

from __future__ import annotations

from flask import current_app, has_request_context, request

from qcwx.errors import ConfigError


def base_url(*, shared: bool = False) -> str:
    """Return the public base URL without a trailing slash (see the module docstring)."""
    configured = current_app.config.get("BASE_URL")
    follows_request = not configured or (
        current_app.config.get("ENV") == "development" and not shared)
    if follows_request and has_request_context():
        return request.host_url.rstrip("/")
    if not configured:
        raise ConfigError("QCWX_BASE_URL is not set: links made outside a request need it")
    return configured.rstrip("/")


def public_url(path: str, *, shared: bool = False) -> str:
    """Return ``path`` (starting with ``/``) on the public base URL."""
    return base_url(shared=shared) + path
