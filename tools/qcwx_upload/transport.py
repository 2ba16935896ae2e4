"""One HTTP exchange with the ingest API and what its answer means for retrying.

Why a separate module: the delivery loop decides *whether* to send again; this module
knows *how* to send and how to read an answer — the per-item JSON, ``Retry-After`` in
seconds or as an HTTP date, and which statuses may heal by themselves.
"""

from __future__ import annotations

import contextlib
import email.utils
import time
from pathlib import Path
from typing import Optional

import requests

from .files import kind_of

API_PATH = "/api/ingest/v1"
#: Answers that may heal by themselves: retry later, keep the file in the spool.
RETRY_STATUSES = {401, 403, 408, 409, 423, 425, 429, 500, 502, 503, 504}
#: Answers that mean "busy, come back soon": retried within the same pass, after
#: ``Retry-After`` when the server gives one (the others wait for a later pass).
SOON_STATUSES = {408, 425, 429, 500, 502, 503, 504}
#: The longest ``Retry-After`` believed; a longer one (or a broken clock) is clamped.
MAX_RETRY_AFTER = 3600.0


def post(http: requests.Session, base_url: str, name: str, data: bytes,
         timeout: float) -> requests.Response:
    """Send one file's bytes to the endpoint its kind calls for."""
    endpoint, fmt = kind_of(Path(name), data[:64])
    url = base_url.rstrip("/") + f"{API_PATH}/{endpoint}"
    timeouts = (10, timeout)
    if endpoint == "files":
        return http.post(url, files={"file": (name, data)}, timeout=timeouts)
    return http.post(url, params={"format": fmt}, data=data, timeout=timeouts,
                     headers={"Content-Type": "application/octet-stream"})


def retry_after(resp: requests.Response, now: Optional[float] = None) -> Optional[float]:
    """Return the seconds ``Retry-After`` asks for (delta or HTTP date), or None if absent."""
    raw = (resp.headers.get("Retry-After") or "").strip()
    if not raw:
        return None
    if raw.isascii() and raw.isdigit():
        return min(float(raw), MAX_RETRY_AFTER)
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        when = email.utils.parsedate_to_datetime(raw).timestamp()
        return min(max(0.0, when - (time.time() if now is None else now)), MAX_RETRY_AFTER)
    return None


def body_of(resp: requests.Response) -> dict:
    """Return the JSON object of an answer ({} when it is not one); items are dicts only."""
    with contextlib.suppress(ValueError):
        body = resp.json()
        if isinstance(body, dict):
            body["items"] = [i for i in body.get("items") or [] if isinstance(i, dict)]
            return body
    return {}


def message_of(resp: requests.Response) -> str:
    """Return the server's Chinese ``error`` (or the reason phrase) for the log."""
    with contextlib.suppress(ValueError, AttributeError):
        return str(resp.json().get("error") or resp.reason)
    return (resp.text or resp.reason or "")[:300]


def items_text(items: list) -> str:
    """Describe unsent items for the log and the journal: where and why, one per item."""
    parts = [f"{i.get('position') or i.get('index')}：{i.get('error')}"
             + ("（可重试）" if i.get("retryable") else "") for i in items[:20]]
    more = f"；另有 {len(items) - 20} 条" if len(items) > 20 else ""
    return f"{len(items)} 条结果未保存：" + "；".join(parts) + more
