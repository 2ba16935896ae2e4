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

import re
from urllib.parse import urlsplit

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


#: Characters a browser drops from a URL or werkzeug refuses in a header: ASCII controls
#: (tab and newline included) and the space. A link this site makes never holds one raw.
_UNSAFE_IN_URL = re.compile(r"[\x00-\x20\x7f]")


def local_path(target: str | None) -> str | None:
    """Return ``target`` when it is a path on this site, safe to redirect to; else None.

    Where a user comes back to after logging in (``next``) or after an admin form (``url``)
    arrives in the request, so it is checked before it becomes a ``Location``. Refused:
    another host (``//evil``, a backslash, an absolute URL) — an open redirect — and any
    control character or space: werkzeug refuses a newline in a header (a 500), and a
    browser removes a tab or newline from a URL, turning ``/<tab>/evil`` into ``//evil``.
    """
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or _UNSAFE_IN_URL.search(target) or urlsplit(target).netloc):
        return None
    return target


def safe_next(target: str | None, fallback: str = "/") -> str:
    """Return ``target`` if it is a :func:`local_path`, else ``fallback`` (no open redirect)."""
    return local_path(target) or fallback
