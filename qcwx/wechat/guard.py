"""Guards of the official-account callback: timestamp window, replay, capped body.

Why a module of its own: the signature proves a request came from WeChat, but not that it
is the first time we see it. A captured (timestamp, nonce, signature) triple can be replayed
within the clock window, so each pair is remembered for the window's length — in Redis when
configured (shared by every worker, expiring by itself), else in this process. The body is
read from the stream with a cap, so a chunked request (no Content-Length) cannot make us
buffer more than :data:`MAX_BODY`.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import current_app, request

from qcwx.numbers import ascii_int

logger = logging.getLogger(__name__)

MAX_CLOCK_SKEW = 300  # seconds: WeChat's own guidance for replay protection
MAX_BODY = 64 * 1024
_MAX_NONCE = 64
_seen_lock = threading.Lock()
_seen: dict[str, float] = {}  # in-process fallback: key -> expiry (monotonic seconds)


def timestamp_problem(timestamp: str) -> str | None:
    """Return why ``timestamp`` is unusable (not ASCII seconds, outside the window) or None."""
    sent_at = ascii_int(timestamp, 0, 10**12)
    if sent_at is None:
        return "时间戳无效"
    if abs(time.time() - sent_at) > MAX_CLOCK_SKEW:
        return "时间戳已过期"
    return None


def first_use(timestamp: str, nonce: str) -> bool:
    """Record the (timestamp, nonce) pair; return False when it was already seen in the window.

    Called only after the signature is checked, so forged requests cannot fill the store.
    """
    if len(nonce) > _MAX_NONCE:
        return False
    key = f"qcwx:wechat:nonce:{timestamp}:{nonce}"
    redis_url = current_app.config.get("REDIS_URL")
    if redis_url:
        from redis.exceptions import RedisError

        from qcwx.wechat.token import redis_client

        try:
            return bool(redis_client(redis_url).set(key, b"1", nx=True,
                                                    ex=2 * MAX_CLOCK_SKEW))
        except RedisError as exc:  # Redis down: still refuse replays to this process
            logger.warning("replay store unavailable, using process memory: %s", exc)
    return _first_use_in_process(key)


def _first_use_in_process(key: str) -> bool:
    now = time.monotonic()
    with _seen_lock:
        if len(_seen) > 10_000:
            for stale in [k for k, until in _seen.items() if until < now]:
                del _seen[stale]
        if _seen.get(key, 0) >= now:
            return False
        _seen[key] = now + 2 * MAX_CLOCK_SKEW
        return True


def read_body() -> bytes | None:
    """Return the request body, or None when it exceeds :data:`MAX_BODY` (chunked too)."""
    if (request.content_length or 0) > MAX_BODY:
        return None
    data = request.stream.read(MAX_BODY + 1)
    return None if len(data) > MAX_BODY else data
