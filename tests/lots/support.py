"""Shared helpers of the unified-lot tests: a distributed lot assigned to labs A and B."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from qcwx.lots import services
from qcwx.lots.models import DistributedLot, LotAssignment
from qcwx.timeutil import local_today

NEW_LOT = "UNI-2701"
MAKER = {1: (5.30, 0.20), 2: (15.50, 0.50)}


@dataclass
class Setup:
    """The registered lot and its assignments, by lab letter."""

    dlot: DistributedLot
    assignments: dict[str, LotAssignment]


def today() -> date:
    return local_today()


def register_and_assign(world, *, targets: bool = True) -> Setup:
    """Register the world's material's new lot in region 1 and give it to labs A and B."""
    centre = world.users["center"]
    material = world.systems["a"].qc_lot.material
    text = "\n".join(f"GLU, {i}, {m}, {s}" for i, (m, s) in MAKER.items()) if targets else ""
    dlot = services.register_lot(centre, region_id=None, material_id=material.id,
                                 lot_number=NEW_LOT, expiry=today() + timedelta(days=300),
                                 levels="水平1，水平2", targets_text=text, note="2027 年度统一批号")
    made = services.assign_labs(centre, dlot.id, [world.lab_a.id, world.lab_b.id],
                                today() - timedelta(days=40))
    return Setup(dlot, {("a" if a.lab_id == world.lab_a.id else "b"): a for a in made})
