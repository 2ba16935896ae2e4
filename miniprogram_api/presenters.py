"""Shape users, test systems, runs, chart series and alerts as the mini-program's JSON.

Plain data in, plain dicts out: dates as ISO strings, times in Asia/Shanghai with offset, so
the mini-program never guesses a zone. The reads come from the scoped queries of ``iqc`` and
``alerts``; nothing here decides access.
"""

from __future__ import annotations

from datetime import date, timedelta

from qcwx.alerts.channels import KIND_LABELS, local_time_text
from qcwx.alerts.models import OutboxMessage
from qcwx.alerts.queries import OUTBOX_STATUS_LABELS
from qcwx.catalog.models import TestSystem
from qcwx.iqc import queries, targets
from qcwx.iqc.services import STATUS_LABEL, next_run_no
from qcwx.orgs.models import User
from qcwx.timeutil import to_local


def iso_local(value) -> str | None:
    """Return a stored UTC datetime as ISO 8601 in Asia/Shanghai (``+08:00``)."""
    local = to_local(value)
    return local.isoformat(timespec="seconds") if local else None


def user(u: User) -> dict:
    """Return the user as the mini-program shows it."""
    lab = u.lab
    return {"id": u.id, "username": u.username, "display_name": u.display_name,
            "role": u.role, "role_label": u.role_label,
            "lab": None if lab is None else {"id": lab.id, "name": lab.name,
                                             "full_name": lab.full_name}}


def _group_runs(points: list[queries.LjPoint], names: dict[int, str]) -> list[dict]:
    """Group LJ points into runs (newest first), each with its values and fired rules."""
    runs: dict[int, dict] = {}
    for p in points:
        run = runs.setdefault(p.run_id, {
            "run_id": p.run_id, "run_date": p.run_date.isoformat(), "run_no": p.run_no,
            "status": p.status, "status_label": STATUS_LABEL[p.status], "values": [],
            "rules": []})
        run["values"].append({"level_id": p.level_id, "level": names.get(p.level_id, ""),
                              "value": p.value_text, "z": p.z, "rules": list(p.rules)})
        run["rules"] += [r for r in p.rules if r not in run["rules"]]
    return sorted(runs.values(), key=lambda r: (r["run_date"], r["run_no"]), reverse=True)


def _levels(ts: TestSystem) -> dict[int, str]:
    return {lv.id: lv.name for lv in ts.levels}


def scan_context(ts: TestSystem, today: date) -> dict:
    """Return the scan context: what is measured, on what, with which targets, and today."""
    limits = targets.limits_in_force(ts, today)
    today_points = queries.lj_points(ts, today, today)
    return {
        "id": ts.id,
        "lab": {"id": ts.lab.id, "full_name": ts.lab.full_name},
        "analyte": {"code": ts.analyte.code, "name": ts.analyte.name, "unit": ts.unit,
                    "decimals": ts.analyte.decimals},
        "instrument": str(ts.instrument),
        "qc_lot": {"lot_number": ts.qc_lot.lot_number, "material": ts.qc_lot.material.name,
                   "expiry": ts.qc_lot.expiry.isoformat() if ts.qc_lot.expiry else None},
        "levels": [{"id": lv.id, "index": lv.level_index, "name": lv.name,
                    "target_mean": limits[lv.id].target_mean if lv.id in limits else None,
                    "target_sd": limits[lv.id].target_sd if lv.id in limits else None}
                   for lv in ts.levels],
        "today": today.isoformat(),
        "next_run_no": next_run_no(ts, today),
        "today_runs": _group_runs(today_points, _levels(ts)),
    }


def run_history(ts: TestSystem, limit: int) -> list[dict]:
    """Return the latest ``limit`` runs, newest first, with values, z, verdicts and rules."""
    runs = queries.run_history(ts, limit)
    if not runs:
        return []
    return _group_runs(queries.lj_points_of_runs(ts, runs), _levels(ts))


def chart_data(ts: TestSystem, today: date, days: int) -> dict:
    """Return the Levey–Jennings series of each level over the last ``days`` days."""
    start = today - timedelta(days=days - 1)
    points = queries.lj_points(ts, start, today)
    limits = targets.limits_in_force(ts, today)
    levels = []
    for lv in ts.levels:
        mine = [p for p in points if p.level_id == lv.id]
        limit = limits.get(lv.id)
        levels.append({
            "level_id": lv.id, "level": lv.name,
            "mean": limit.target_mean if limit else None,
            "sd": limit.target_sd if limit else None,
            "labels": [f"{p.run_date:%m-%d}" + (f" #{p.run_no}" if p.run_no > 1 else "")
                       for p in mine],
            "run_ids": [p.run_id for p in mine],
            "values": [p.value for p in mine],
            "z": [p.z for p in mine],
            "status": [p.status for p in mine],
            "rules": [list(p.rules) for p in mine],
        })
    return {"test_system_id": ts.id, "analyte": ts.analyte.name, "unit": ts.unit,
            "decimals": ts.analyte.decimals, "start": start.isoformat(),
            "end": today.isoformat(), "levels": levels}


def _alert_title(o: OutboxMessage) -> str:
    p = o.payload or {}
    if "analyte" in p:
        return f"{p['analyte']}质控{p.get('status_label', '')}（{p['run_date']} 第{p['run_no']}批）"
    if o.kind == "missing_submission":
        return f"{p.get('date', '')} 仍有 {len(p.get('missing', []))} 个项目未提交质控"
    return (f"{p.get('date', '')} 质控日报：警告 {p.get('warnings', 0)} 批，"
            f"失控 {p.get('rejects', 0)} 批")


def alert(o: OutboxMessage, acked_by: dict[int, str]) -> dict:
    """Return one alert with its delivery state and who read it."""
    p = o.payload or {}
    return {
        "id": o.id, "kind": o.kind, "kind_label": KIND_LABELS.get(o.kind, o.kind),
        "title": _alert_title(o), "run_id": o.run_id,
        "test_system_id": p.get("test_system_id"), "rules": p.get("rules", []),
        "time": local_time_text(p.get("at")) if p.get("at") else None,
        "created_at": iso_local(o.created_at),
        "delivery_status": o.status, "delivery_status_label": OUTBOX_STATUS_LABELS.get(o.status,
                                                                                      o.status),
        "acked": o.acked_at is not None, "acked_at": iso_local(o.acked_at),
        "acked_by": acked_by.get(o.acked_by_id) if o.acked_by_id else None,
    }
