"""After a load or fault run: does the database hold exactly what the phones were told?

Why: a bench that only counts answers would miss the failures that matter in a lab — a run
answered 201 but never stored, a resend stored twice, an alert lost while Redis was down or
sent twice after a worker died. This compares three independent records: the answers the
phones got, the rows in the database, and the messages the fake WeChat received.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text

from bench.loadgen import Tally

ALERTED = ("warning", "reject")


@dataclass
class Accounting:
    """Counts on each side and every discrepancy found (``problems`` empty = exact)."""

    accepted: int = 0
    stored_runs: int = 0
    rejects: int = 0
    warnings: int = 0
    outbox: Counter = field(default_factory=Counter)
    messages: int = 0
    drain_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"accepted {self.accepted} · stored runs {self.stored_runs} · rejected "
                f"{self.rejects} · warnings {self.warnings} · outbox {dict(self.outbox)} · "
                f"WeChat messages {self.messages} · drained in {self.drain_seconds:.1f} s · "
                f"{'EXACT' if not self.problems else f'{len(self.problems)} PROBLEMS'}")


def _rows(database_url: str, sql: str) -> list[tuple]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def wait_drained(database_url: str, timeout: float, kick=None, kick_every: float = 5.0) -> float:
    """Wait until no outbox row is pending or failed; return the seconds waited.

    ``kick`` (e.g. sending the sweep task, as beat does every minute) is called every
    ``kick_every`` seconds while rows remain.
    """
    t0 = last_kick = time.monotonic()
    while time.monotonic() - t0 < timeout:
        left = _rows(database_url, "SELECT COUNT(*) FROM outbox_message "
                                   "WHERE status IN ('pending', 'failed')")[0][0]
        if not left:
            return time.monotonic() - t0
        if kick is not None and time.monotonic() - last_kick >= kick_every:
            kick()
            last_kick = time.monotonic()
        time.sleep(0.5)
    return time.monotonic() - t0


def account(database_url: str, tally: Tally, messages: list[dict], tag: str = "") -> Accounting:
    """Compare the phones' answers, the database and the fake WeChat's messages.

    ``tag`` limits the comparison to submissions whose ``client_id`` starts with it (a second
    run on the same database); runs without a submission are looked for everywhere.
    """
    acc = Accounting(accepted=len(tally.accepted))
    stored = [row for row in _rows(database_url,
                                   "SELECT s.client_id, s.run_id, r.status FROM submission s "
                                   "JOIN qc_run r ON r.id = s.run_id")
              if row[0].startswith(tag)]
    orphans = _rows(database_url, "SELECT COUNT(*) FROM qc_run r WHERE NOT EXISTS "
                                  "(SELECT 1 FROM submission s WHERE s.run_id = r.id)")[0][0]
    acc.stored_runs = len({run_id for _, run_id, _ in stored}) + orphans
    by_client = {c: (run_id, status) for c, run_id, status in stored}
    if len(by_client) != len(stored):
        acc.problems.append("a client_id is stored more than once")
    missing = set(tally.accepted) - set(by_client)
    extra = set(by_client) - set(tally.accepted)
    if missing:
        acc.problems.append(f"{len(missing)} accepted submissions are not stored "
                            f"(e.g. {sorted(missing)[:3]})")
    if extra:
        acc.problems.append(f"{len(extra)} stored submissions were never accepted "
                            f"(e.g. {sorted(extra)[:3]})")
    if acc.stored_runs != len(stored):
        acc.problems.append(f"{acc.stored_runs} runs stored for {len(stored)} submissions")
    differ = [c for c, seen in tally.accepted.items() if c in by_client and by_client[c] != seen]
    if differ:
        acc.problems.append(f"{len(differ)} runs stored with another id/status than answered")
    statuses = {run_id: status for run_id, status in by_client.values()}
    mine = set(statuses)
    messages = [m for m in messages if _run_of(m) in mine]
    acc.rejects = sum(s == "reject" for s in statuses.values())
    acc.warnings = sum(s == "warning" for s in statuses.values())
    _check_alerts(acc, database_url, statuses, messages)
    return acc


def _run_of(message: dict) -> int | None:
    url = message.get("url") or ""
    return int(url.rsplit("/", 1)[1]) if "/runs/" in url else None


def _check_alerts(acc: Accounting, database_url: str, statuses: dict[int, str],
                  messages: list[dict]) -> None:
    outbox = [row for row in _rows(database_url, "SELECT run_id, kind, status FROM "
                                                 "outbox_message WHERE kind LIKE 'run_%'")
              if row[0] in statuses]
    acc.outbox = Counter(status for _, _, status in outbox)
    per_run = Counter((run_id, kind) for run_id, kind, _ in outbox)
    wanted = Counter((run_id, f"run_{s}") for run_id, s in statuses.items() if s in ALERTED)
    if per_run != wanted:
        acc.problems.append(f"outbox rows differ from the alerted runs: missing "
                            f"{len(wanted - per_run)}, extra {len(per_run - wanted)}")
    unsent = sum(n for status, n in acc.outbox.items() if status != "sent")
    if unsent:
        acc.problems.append(f"{unsent} run alerts not sent: {dict(acc.outbox)}")
    sent = Counter(_run_of(m) for m in messages if m["kind"] == "template")
    sent.pop(None, None)
    acc.messages = sum(sent.values())
    alerted = {run_id for run_id, _ in wanted}
    doubled = [r for r, n in sent.items() if n > 1]
    if doubled:
        acc.problems.append(f"{len(doubled)} runs alerted more than once in WeChat "
                            f"(e.g. run {doubled[0]}: {sent[doubled[0]]} messages)")
    lost = alerted - set(sent)
    if lost:
        acc.problems.append(f"{len(lost)} alerted runs have no WeChat message")
    if set(sent) - alerted:
        acc.problems.append(f"{len(set(sent) - alerted)} WeChat messages for runs not alerted")
