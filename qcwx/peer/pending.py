"""Coalesce the peer refreshes of many commits into one worker pass (Redis, not one task each).

Why: a peer refresh per submission made the worker run one task — app context, session,
six statements, commit — for every run, about a fifth of a two-core machine under 200
phones (issue 14, ``bench/load_submit.py``). Peer statistics do not need to move within the
millisecond; within a second or two they are as live as a page can show.

How, when a broker is configured (the production setup):

* after a commit, :func:`coalesce` records each changed system in the Redis hash
  ``qcwx:peer:pending`` as ``{ts id: first changed day}`` (an earlier day wins, "" = all
  days), and schedules one :data:`DRAIN_TASK` ``DELAY`` seconds ahead unless one is already
  scheduled (``qcwx:peer:drain-scheduled``, ``SET NX`` with a TTL) — one Lua script, one
  round trip, instead of a Celery message per commit;
* the drain (:func:`drain`) takes the hash and the schedule flag away in one step, then
  refreshes every system in chunks (one aggregation per chunk and day bound). A commit after
  that step marks its system again and schedules the next drain, so nothing is missed; a
  failed drain puts its systems back.

Safety nets, as for a lost publish: the flag expires after ``FLAG_TTL`` (a lost drain
message is rescheduled by the next commit), beat runs the drain every minute, and the
nightly rebuild recomputes everything. Without a broker (development, tests: Celery eager)
commits keep refreshing at once, as before.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date

from flask import current_app

from qcwx.extensions import celery

log = logging.getLogger(__name__)

HASH_KEY = "qcwx:peer:pending"
FLAG_KEY = "qcwx:peer:drain-scheduled"
DRAIN_TASK = "qcwx.peer.refresh_pending"
DELAY = 1.0  # seconds a drain waits for more commits
FLAG_TTL = 30  # seconds: a lost drain message is rescheduled after this

# Keeps the earliest day per system ("" sorts first: a whole-history refresh covers any
# day) for the (ts id, day) pairs of ARGV from index FIRST on.
_KEEP_EARLIEST = """
for i = FIRST, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if (not old) or ARGV[i + 1] < old then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
"""
# KEYS: hash, flag; ARGV: ttl, then the pairs ("" = all days). Returns 1 when this call
# scheduled the drain (the caller publishes it), else 0.
_MARK = _KEEP_EARLIEST.replace("FIRST", "2") + """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return 1
end
return 0
"""
# KEYS: hash, flag. Returns the hash's pairs and removes both.
_TAKE = """
local all = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return all
"""
# KEYS: hash; ARGV: the pairs. Puts back the systems a failed drain took.
_PUT_BACK = _KEEP_EARLIEST.replace("FIRST", "1") + "return 1\n"


def _redis():
    """The Redis client of the broker, or None when tasks run eagerly in-process."""
    url = current_app.config.get("REDIS_URL")
    if not url or celery.conf.task_always_eager:
        return None
    from qcwx.wechat.token import redis_client  # the process's one pool per URL

    return redis_client(url)


def coalesce(task_name: str, items: list) -> dict[str, list]:
    """Turn a commit's ``[[ts id, day or None], …]`` into what must still be published.

    With a broker: record them in Redis and return ``{DRAIN_TASK: [[]]}`` when this commit
    scheduled the drain, else ``{}``. Without one, or when Redis fails: ``{task_name: items}``
    (publish the per-system refresh as before; a failed publish is logged by the caller).
    """
    client = _redis()
    if client is None:
        return {task_name: items}
    pairs: list[str] = []
    for ts_id, day in items:
        pairs += [str(int(ts_id)), day or ""]
    try:
        scheduled = client.eval(_MARK, 2, HASH_KEY, FLAG_KEY, FLAG_TTL, *pairs)
    except Exception as exc:  # noqa: BLE001 - Redis down: fall back to the plain publish
        log.warning("peer refresh not coalesced (%s); publishing it per system", exc)
        return {task_name: items}
    return {DRAIN_TASK: [[]]} if scheduled else {}


def take() -> dict[int, date | None]:
    """Remove and return every pending system with its first changed day (None: all)."""
    client = _redis()
    if client is None:
        return {}
    raw = client.eval(_TAKE, 2, HASH_KEY, FLAG_KEY)
    out: dict[int, date | None] = {}
    for key, value in zip(raw[::2], raw[1::2], strict=True):
        text = value.decode() if isinstance(value, bytes) else str(value)
        out[int(key)] = date.fromisoformat(text) if text else None
    return out


def put_back(systems: dict[int, date | None]) -> None:
    """Return systems a failed drain took, so the next drain refreshes them."""
    client = _redis()
    if client is None or not systems:
        return
    pairs: list[str] = []
    for ts_id, day in systems.items():
        pairs += [str(ts_id), day.isoformat() if day else ""]
    client.eval(_PUT_BACK, 1, HASH_KEY, *pairs)


def by_day(systems: dict[int, date | None]) -> dict[date | None, list[int]]:
    """Group systems by their first changed day: one chunked refresh per group."""
    groups: dict[date | None, list[int]] = defaultdict(list)
    for ts_id, day in sorted(systems.items()):
        groups[day].append(ts_id)
    return dict(groups)
