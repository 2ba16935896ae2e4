"""Publish the work a transaction leaves for the workers as one Celery message per commit.

Why one: a submission used to publish twice after its commit — the alert dispatch and the
peer refresh — and each publish is a broker round trip on the request's critical path (a
fifth of a submission's CPU under load, issue 14). Features still say *what* should follow
a commit in their own words (:func:`qcwx.alerts.delivery.dispatch_after_commit`,
:func:`qcwx.peer.services.refresh_after_commit`), each under its own ``session.info`` key;
they :func:`register` that key with the name of the task that handles one id. After the
outermost commit the listener here collects every registered key and publishes a single
``qcwx.followups.run`` message ``{task name: [items]}``; a rollback forgets them all. An item
is an id, or ``[id, argument]`` when the feature keeps a dict ``{id: argument}`` (the peer
refresh passes the first day that changed, so it re-reads days, not a system's whole history).

The worker runs each id through the named task's body in its own app context (its own
session and commit), so one failing id neither blocks nor rolls back the others; a failed id
is re-published on its own, where the task's own retry policy applies. Every named task is
idempotent (dispatch claims its row; a peer refresh recomputes), so redelivery is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from celery import shared_task
from sqlalchemy import event
from sqlalchemy.orm import Session

from qcwx.extensions import celery

log = logging.getLogger(__name__)

TASK = "qcwx.followups.run"


@dataclass(frozen=True)
class Followup:
    """A kind of after-commit work: where its ids wait, which task takes one id, in order."""

    info_key: str
    task_name: str
    lost_message: str  # logged with the id when it cannot be queued (what catches up later)
    priority: int  # lower runs first
    #: (task name, items) → {task name: items} still to publish; None publishes the items
    coalesce: Callable[[str, list], dict[str, list]] | None = None


_REGISTRY: list[Followup] = []
#: task name → seconds its message waits (a coalescing drain); published on its own
_DELAYED: dict[str, float] = {}


def register(info_key: str, task_name: str, lost_message: str, priority: int = 50, *,
             coalesce: Callable[[str, list], dict[str, list]] | None = None) -> None:
    """Publish the ids a session collects under ``info_key`` to ``task_name`` after commit.

    ``priority`` orders the work inside one message (alerts first: a person is waiting).
    ``lost_message`` is a ``%s``-format of (id, error) logged when the publish fails.
    ``coalesce`` may replace the items by other work (the peer refresh parks them in Redis
    and publishes one delayed drain for many commits: :mod:`qcwx.peer.pending`).
    """
    if all(f.info_key != info_key for f in _REGISTRY):
        _REGISTRY.append(Followup(info_key, task_name, lost_message, priority, coalesce))
        _REGISTRY.sort(key=lambda f: f.priority)


def register_delayed(task_name: str, seconds: float) -> None:
    """Publish ``task_name``'s items ``seconds`` late, in a message of their own."""
    _DELAYED[task_name] = seconds


def pending(session: Session) -> dict[str, list]:
    """Pop and return ``{task name: sorted items}`` of every registered key of ``session``.

    A set of ids gives its ids; a dict ``{id: argument}`` gives ``[id, argument]`` pairs.
    """
    batch: dict[str, list] = {}
    for f in _REGISTRY:
        ids = session.info.pop(f.info_key, None)
        if ids:
            items = ([[i, arg] for i, arg in sorted(ids.items())]
                     if isinstance(ids, dict) else sorted(ids))
            for name, more in (f.coalesce(f.task_name, items) if f.coalesce
                               else {f.task_name: items}).items():
                batch.setdefault(name, []).extend(more)
    return batch


@event.listens_for(Session, "after_commit")
def _publish_on_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    batch = pending(session)
    if batch:
        publish(batch)


@event.listens_for(Session, "after_soft_rollback")
def _forget_on_rollback(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None and not previous_transaction.nested:
        for f in _REGISTRY:
            session.info.pop(f.info_key, None)


def publish(batch: dict[str, list]) -> None:
    """Queue ``batch`` as one message; a broker failure is logged per id, never raised.

    The rows are already committed, so a failed publish only delays the work until its
    safety net (the alert sweeper, the nightly peer rebuild); failing the request would make
    the user resubmit a stored run. One connection attempt, no retry loop: kombu would
    otherwise keep the user waiting for seconds while Redis is down
    (``broker_transport_options["max_retries"] = 0`` in :func:`qcwx.extensions.init_celery`).

    The message goes through the app's producer pool, whose Redis connection stays open
    between requests. A fresh connection per publish (what this did before) cost a TCP
    connect, a PING and a queue declaration each time: a fifth of a gunicorn worker's time
    under load (issue 14, py-spy). A pooled connection that Redis dropped reconnects on its
    next use.
    """
    now = {name: items for name, items in batch.items() if name not in _DELAYED}
    parts = [(now, None)] if now else []
    parts += [({name: items}, _DELAYED[name]) for name, items in batch.items()
              if name in _DELAYED]
    for part, countdown in parts:
        try:
            task = celery.tasks.get(TASK)
            if task is None:
                raise LookupError(f"task {TASK} is not registered")
            task.apply_async(args=[part], retry=False, countdown=countdown)
        except Exception as exc:  # noqa: BLE001 - any broker failure: the safety nets catch up
            messages = {f.task_name: f.lost_message for f in _REGISTRY}
            for name, ids in part.items():
                for i in ids:
                    log.warning(messages.get(name, "%s not queued: %s"), i, exc)


@shared_task(name=TASK, acks_late=True, ignore_result=True)
def run(batch: dict[str, list]) -> dict[str, int]:
    """Run every id of ``batch`` through its task, each in its own app context and commit."""
    done: dict[str, int] = {}
    order = [f.task_name for f in _REGISTRY]
    for name in sorted(batch, key=lambda n: order.index(n) if n in order else len(order)):
        task = celery.tasks.get(name)
        for i in batch[name]:
            if task is None:
                log.error("follow-up task %s is not registered; id %s dropped", name, i)
                continue
            try:
                task(*_args(i))  # FlaskTask.__call__: a fresh app context, session and commit
                done[name] = done.get(name, 0) + 1
            except Exception:  # noqa: BLE001 - isolate ids: one failure must not stop the rest
                log.exception("follow-up %s(%s) failed; queued on its own for its retries",
                              name, i)
                _requeue(task, i)
    return done


def _args(item) -> list:
    """The task arguments of one batch item: an id, or an ``[id, argument]`` pair."""
    return list(item) if isinstance(item, (list, tuple)) else [item]


def _requeue(task, item) -> None:
    try:
        task.apply_async(args=_args(item), retry=False)
    except Exception as exc:  # noqa: BLE001 - the feature's safety net catches up
        log.warning("follow-up %s(%s) could not be re-queued: %s", task.name, item, exc)
