"""Run and save instrument comparisons; list and load them in scope.

Why separate from :mod:`.comparison`: that module is the statistics over pairs; this one
is who may run a comparison, where its pairs come from and what is stored. Running is a
formal verification record (WS/T 407), so it takes the roles that may change what a test
system is judged by; everyone in the lab's scope may read it. Services flush, the view
commits (one transaction; a refused upload writes nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from qcwx.analytics import comparison
from qcwx.analytics.models import InstrumentComparison
from qcwx.analytics.pair_files import read_pairs
from qcwx.catalog.models import Analyte, TestSystem
from qcwx.errors import NotFound, UserError
from qcwx.extensions import db
from qcwx.iqc.targets import require_target_editor
from qcwx.iqc.validation import load_test_system
from qcwx.numbers import parse_number
from qcwx.orgs import scopes
from qcwx.orgs.models import Lab, User
from qcwx.peer.queries.frames import load_specs


@dataclass(frozen=True)
class Settings:
    """What the user chose besides the pairs: λ, allowable bias (None = the spec's), levels."""

    error_ratio: float
    allowable_bias: float | None
    decision_levels: str | None


def parse_positive(text: str | None, field: str, label: str, default: float | None
                   ) -> float | None:
    """Return a positive number from a form field (``default`` when empty)."""
    if text is None or not str(text).strip():
        return default
    try:
        value = parse_number(text)
    except ValueError:
        raise UserError(f"{label}“{str(text)[:20]}”不是有效数字", field=field) from None
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{label}必须大于 0", field=field)
    return value


def settings_from(form) -> Settings:
    """Return the comparison settings of a form (λ default 1)."""
    return Settings(parse_positive(form.get("error_ratio"), "error_ratio", "误差方差比 λ", 1.0),
                    parse_positive(form.get("allowable_bias"), "allowable_bias", "允许偏倚",
                                   None),
                    form.get("decision_levels"))


def default_allowable_bias(analyte_id: int) -> float:
    """Return the analyte's allowable bias% (WS/T 403), else ½ TEa% (QC_SPEC §6)."""
    spec = load_specs([analyte_id]).get(analyte_id)
    if spec is not None and spec.allowable_bias:
        return float(spec.allowable_bias)
    if spec is not None and spec.tea is not None:
        return spec.tea.pct / 2.0
    raise UserError("该项目未配置允许偏倚，请填写", field="allowable_bias")


def _store(actor: User, lab: Lab, analyte: Analyte, unit: str, pairs: list[list],
           settings: Settings, **fields) -> InstrumentComparison:
    allowable = settings.allowable_bias or default_allowable_bias(analyte.id)
    xs = sorted(float(p[0]) for p in pairs)
    levels = comparison.parse_levels(settings.decision_levels,
                                     [xs[len(xs) // 2]] if xs else [1.0])
    comparison.check_analysable(pairs, settings.error_ratio, allowable, levels)
    row = InstrumentComparison(lab_id=lab.id, analyte_id=analyte.id, unit=unit, pairs=pairs,
                               error_ratio=settings.error_ratio, allowable_bias=allowable,
                               decision_levels=levels, created_by_id=actor.id, **fields)
    db.session.add(row)
    db.session.flush()
    return row


def run_from_qc(actor: User, x_ts_id, y_ts_id, start: date, end: date,
                settings: Settings) -> InstrumentComparison:
    """Compare two test systems of one lab from their QC results of the same days and level."""
    require_target_editor(actor, "进行仪器比对")
    if start > end:
        raise UserError("开始日期不能晚于结束日期", field="start")
    x_ts, y_ts = load_test_system(actor, x_ts_id), load_test_system(actor, y_ts_id)
    pairs = comparison.qc_pairs(x_ts, y_ts, start, end)
    return _store(actor, x_ts.lab, x_ts.analyte, x_ts.unit, pairs, settings, source="qc",
                  x_label=ts_label(x_ts), y_label=ts_label(y_ts), x_ts_id=x_ts.id,
                  y_ts_id=y_ts.id, period_start=start, period_end=end)


def run_from_file(actor: User, lab_id, analyte_id, data: bytes, settings: Settings,
                  x_label: str | None = None, y_label: str | None = None
                  ) -> InstrumentComparison:
    """Compare two analysers from an uploaded file of paired patient results."""
    require_target_editor(actor, "进行仪器比对")
    lab = scopes.get_lab_object(actor, Lab, _int(lab_id, "lab_id", "实验室"), lab_attr="id")
    analyte = db.session.get(Analyte, _int(analyte_id, "analyte_id", "检验项目"))
    if analyte is None:
        raise NotFound("检验项目不存在", field="analyte_id")
    parsed = read_pairs(data)
    return _store(actor, lab, analyte, analyte.unit, parsed.pairs, settings, source="upload",
                  x_label=(x_label or "").strip()[:120] or parsed.x_label,
                  y_label=(y_label or "").strip()[:120] or parsed.y_label)


def _int(value, field: str, label: str) -> int:
    text = str(value or "").strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise UserError(f"请选择{label}", field=field)
    return int(text)


def ts_label(ts: TestSystem) -> str:
    """Return an analyser's name as the comparison shows it."""
    serial = f"（{ts.instrument.serial}）" if ts.instrument.serial else ""
    return f"{ts.instrument.maker} {ts.instrument.model}{serial}"[:120]


def load_comparison(actor: User, comparison_id: int) -> InstrumentComparison:
    """Return a saved comparison of a lab in scope, else 404."""
    return scopes.get_lab_object(actor, InstrumentComparison, comparison_id)


def comparisons_in_scope(actor: User, lab_id: int | None = None, limit: int = 100
                         ) -> list[InstrumentComparison]:
    """Return the saved comparisons the actor may see, newest first."""
    stmt = scopes.scoped(select(InstrumentComparison), actor, InstrumentComparison.lab_id)
    if lab_id is not None:
        stmt = stmt.where(InstrumentComparison.lab_id == lab_id)
    return list(db.session.scalars(stmt.order_by(InstrumentComparison.created_at.desc(),
                                                 InstrumentComparison.id.desc()).limit(limit)))


def comparable_systems(actor: User) -> list[TestSystem]:
    """Return active test systems in scope that share lab, analyte and lot with another."""
    systems = list(db.session.scalars(scopes.scoped(
        select(TestSystem).where(TestSystem.active), actor, TestSystem.lab_id)
        .order_by(TestSystem.lab_id, TestSystem.analyte_id, TestSystem.id)))
    key = [(ts.lab_id, ts.analyte_id, ts.qc_lot_id) for ts in systems]
    return [ts for ts, k in zip(systems, key, strict=True) if key.count(k) > 1]
