"""With Redis down, a request's publishes fail at once instead of holding the submission.

Why: ``bench/fault_redis.py`` stopped Redis under load and every submission took ~19 s —
the peer-refresh publish subscribed to its result in Redis (whose reconnect loop retried
20 × 1 s) and kombu retried the connection for ~6 s more — although the run was committed
and the outbox sweep delivers its alert later anyway. These tests need no Redis: the first
spies on the result backend, the second counts connection attempts to a closed port.
"""

from __future__ import annotations

import inspect

import pytest
import redis.connection
from celery import Celery
from kombu.exceptions import OperationalError

from bench.stack import free_port
from qcwx.extensions import celery
from tests.fixtures.app import IN_CI


def test_publishing_a_task_never_subscribes_to_its_result(app, monkeypatch):
    subscribed = []
    monkeypatch.setattr(type(celery.backend), "on_task_call",
                        lambda self, producer, task_id: subscribed.append(task_id))
    monkeypatch.setitem(celery.conf, "task_always_eager", False)
    names = sorted(n for n in celery.tasks if n.startswith("qcwx."))
    assert "qcwx.peer.refresh" in names and "qcwx.alerts.dispatch" in names
    # A connection of its own: the shared app's broker and pooled connection are those of
    # whichever test app was configured last in this process (one had Redis on port 1).
    with celery.connection_for_write("memory://") as connection:
        for name in names:
            task = celery.tasks[name]
            required = [p for p in inspect.signature(task.run).parameters.values()
                        if p.default is p.empty]
            task.apply_async(args=[0] * len(required), retry=False, connection=connection)
    assert subscribed == []


def test_a_publish_with_the_broker_down_tries_to_connect_once(app, monkeypatch):
    attempts = []
    connect = redis.connection.Connection._connect

    def counting(self):
        attempts.append(self.port)
        return connect(self)

    monkeypatch.setattr(redis.connection.Connection, "_connect", counting)
    port = free_port()  # nothing listens there: connection refused
    probe = Celery("probe", set_as_current=False)
    probe.conf.update({k: v for k, v in celery.conf.items() if k.startswith(("broker_", "task_"))})
    probe.conf.update(broker_url=f"redis://127.0.0.1:{port}/0", result_backend=None,
                      task_always_eager=False)
    try:
        with pytest.raises(OperationalError):
            probe.send_task("qcwx.peer.refresh", args=[1], retry=False)
    finally:
        probe.close()
    assert attempts == [port]


def test_publishes_share_one_pooled_broker_connection_and_survive_a_restart(
        app, monkeypatch, tmp_path):
    """Issue 14: each after-commit publish opened its own Redis connection (connect, PING,
    queue declaration): a fifth of a gunicorn worker's time under load. Publishes now go
    through the producer pool; a connection Redis dropped reconnects on the next publish."""
    import shutil

    import redis as redis_lib

    from bench.stack import Stack
    from qcwx import followups

    if not shutil.which("redis-server"):
        if IN_CI:  # the project's one CI switch: a missing service fails, never skips
            pytest.fail("redis-server is needed in CI")
        pytest.skip("redis-server is not installed")
    stack = Stack(tmp_path, {})
    port = free_port()
    server = stack.redis(port)
    connects = []
    connect = redis.connection.Connection._connect
    monkeypatch.setattr(redis.connection.Connection, "_connect",
                        lambda self: (connects.append(self.port), connect(self))[1])
    probe = Celery("probe-pool", set_as_current=False)
    probe.conf.update({k: v for k, v in celery.conf.items() if k.startswith(("broker_", "task_"))})
    probe.conf.update(broker_url=f"redis://127.0.0.1:{port}/0", result_backend=None,
                      task_always_eager=False)
    monkeypatch.setattr(followups, "celery", probe)
    queue = redis_lib.Redis(port=port)
    try:
        followups.publish({"qcwx.peer.refresh": [0]})
        opened = len(connects)  # the pooled connection and kombu's channel
        for i in range(1, 20):
            followups.publish({"qcwx.peer.refresh": [i]})
        assert len(connects) == opened <= 2  # 19 more publishes, no new connection
        assert queue.llen("celery") == 20
        server.popen.terminate()
        server.popen.wait(10)
        followups.publish({"qcwx.peer.refresh": [99]})  # logged, never raised
        server = stack.redis(port)
        followups.publish({"qcwx.peer.refresh": [100]})
        assert redis_lib.Redis(port=port).llen("celery") == 1  # a fresh server: only this one
    finally:
        probe.close()
        server.popen.terminate()
        server.popen.wait(10)
