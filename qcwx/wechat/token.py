"""Where WeChat access tokens and JS-SDK tickets live, and the lock that guards refreshing.

WeChat keeps only the newest access token of an appid valid: every refresh invalidates the
token every other web worker and Celery process is using. If each process refreshed on its
own, they would invalidate each other in a loop (PITFALLS: thousands of refreshes with 8
senders). So the token lives in one shared store — Redis when ``REDIS_URL`` is set, else a
process-wide in-memory store — and is refreshed only under a lock, re-reading the store after
acquiring it: whoever waited finds the fresh token and uses it instead of refreshing again.

Keys are namespaced by the API base, so tokens minted by a local fake never reach the real
WeChat (or another fake on another port) and vice versa.
"""

from __future__ import annotations

import hashlib
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import redis as redis_lib
from wechatpy.session import SessionStorage
from wechatpy.session.redisstorage import RedisStorage

from qcwx.errors import ExternalServiceError

# Keep a margin before WeChat's expiry so a token is never used in its last minutes.
EXPIRY_MARGIN = 300
MIN_TTL = 60
LOCK_TIMEOUT = 30  # seconds a dead holder keeps the lock at most
LOCK_WAIT = 30  # seconds a caller waits for a refresh by someone else


class TokenStore(SessionStorage):
    """A wechatpy session storage that can also hand out a cross-worker refresh lock."""

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:  # pragma: no cover - interface
        """Hold the refresh lock ``name`` for the duration of the block."""
        raise NotImplementedError
        yield


class RedisTokenStore(RedisStorage, TokenStore):
    """Tokens in Redis, shared by every process; refresh lock = a redis-py ``Lock``."""

    def __init__(self, client: redis_lib.Redis, prefix: str):
        super().__init__(client, prefix=prefix)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold a Redis lock named after ``name``; fail loudly when it cannot be had."""
        lock = self.redis.lock(self.key_name(f"lock:{name}"), timeout=LOCK_TIMEOUT,
                               blocking_timeout=LOCK_WAIT)
        try:
            acquired = lock.acquire()
        except redis_lib.RedisError as exc:
            raise ExternalServiceError(f"Redis lock for WeChat {name} failed: {exc}") from exc
        if not acquired:
            raise ExternalServiceError(f"timed out waiting for the WeChat {name} lock")
        try:
            yield
        finally:
            try:
                lock.release()
            except redis_lib.exceptions.LockError:
                pass  # expired while we held it: the refresh was slow, nothing to undo


class MemoryTokenStore(TokenStore):
    """Tokens in this process's memory (embedded default without Redis), thread-safe."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self._data: dict[str, tuple[Any, float | None]] = {}
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value unless it is missing or expired."""
        with self._guard:
            value, expires_at = self._data.get(self._key(key), (None, None))
            if value is None or (expires_at is not None and expires_at <= time.monotonic()):
                return default
            return value

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (forever when None)."""
        if value is None:
            return
        expires_at = time.monotonic() + ttl if ttl else None
        with self._guard:
            self._data[self._key(key)] = (value, expires_at)

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        with self._guard:
            self._data.pop(self._key(key), None)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold a process-wide lock named ``name``."""
        with self._guard:
            lock = self._locks.setdefault(self._key(name), threading.Lock())
        if not lock.acquire(timeout=LOCK_WAIT):
            raise ExternalServiceError(f"timed out waiting for the WeChat {name} lock")
        try:
            yield
        finally:
            lock.release()


_registry_guard = threading.Lock()
_memory_stores: dict[str, MemoryTokenStore] = {}
_redis_clients: dict[tuple[str, float | None], redis_lib.Redis] = {}


def namespace(api_base: str | None) -> str:
    """Return the key prefix for tokens of one WeChat endpoint (real or a fake's URL)."""
    if not api_base:
        return "qcwx:wechat:live"
    return "qcwx:wechat:" + hashlib.sha1(api_base.encode(), usedforsecurity=False).hexdigest()[:10]


def redis_client(url: str, timeout: float | None = None) -> redis_lib.Redis:
    """Return this process's Redis client for ``url`` (one connection pool per URL).

    ``timeout`` (seconds, connect and socket) gives a client of its own with that bound,
    pooled the same way: the health check must answer "down" within a second.
    """
    key = (url, timeout)
    with _registry_guard:
        client = _redis_clients.get(key)
        if client is None:
            client = _redis_clients[key] = redis_lib.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return client


def token_store(redis_url: str | None, api_base: str | None) -> TokenStore:
    """Return the shared store: Redis when configured, else the process-wide memory store."""
    prefix = namespace(api_base)
    if redis_url:
        return RedisTokenStore(redis_client(redis_url), prefix)
    with _registry_guard:
        store = _memory_stores.get(prefix)
        if store is None:
            store = _memory_stores[prefix] = MemoryTokenStore(prefix)
        return store


def token_ttl(expires_in: Any) -> int:
    """Return how long to keep a token or ticket WeChat says lives ``expires_in`` seconds."""
    try:
        seconds = int(expires_in)
    except (TypeError, ValueError):
        seconds = 7200
    return max(MIN_TTL, seconds - EXPIRY_MARGIN)


def jsapi_ticket(client: Any) -> str:
    """Return the JS-SDK ticket of ``client``'s appid, fetched once and shared like the token.

    WeChat limits ``getticket`` calls per day and, like tokens, a shared cache keeps every
    worker on the same ticket. Refreshing happens under the store's lock with a re-read.
    """
    store: TokenStore = client.session
    key = f"{client.appid}_jsapi_ticket"
    ticket = store.get(key)
    if ticket:
        return ticket
    with store.lock(key):
        ticket = store.get(key)
        if ticket:
            return ticket
        result = client.jsapi.get_ticket("jsapi")
        ticket = result["ticket"]
        store.set(key, ticket, token_ttl(result.get("expires_in")))
        return ticket
