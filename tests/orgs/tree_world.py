"""A small region tree built with factories: one city, two districts, and a separate tree.

::

    城市 (city, root)          其他市 (another root, a separate tree)
    ├── 甲区 (district A)      └── hospital X · lab x
    │   └── hospitals A, A2, A3 · labs a, a2, a3
    ├── 乙区 (district B)
    │   └── hospitals B, B2, B3 · labs b, b2, b3
    └── hospital C (directly in the city) · lab c

Users: admin; ``center`` and ``expert`` at the city; ``center_a``/``center_b`` at the
districts; ``center_x`` at the other tree; director, supervisor and technician of lab a.
Every lab has one glucose test system on the same QC lot with five accepted runs on the 1st
of the current month (the city's tree alone is a publishable group of 7 labs, 35 results).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qcwx import models as m
from qcwx.extensions import db
from qcwx.timeutil import local_today
from tests import factories as f

LAB_KEYS = ("a", "a2", "a3", "b", "b2", "b3", "c", "x")
LEVEL_VALUES = {1: 5.50, 2: 15.80}

ROLES_AND_POSITIONS = ("admin", "center", "expert", "center_a", "center_b", "center_x",
                       "director", "supervisor", "technician")


@dataclass
class TreeWorld:
    city: m.Region
    district_a: m.Region
    district_b: m.Region
    other: m.Region
    labs: dict[str, m.Lab] = field(default_factory=dict)
    users: dict[str, m.User] = field(default_factory=dict)
    systems: dict[str, m.TestSystem] = field(default_factory=dict)


def sub_region(name: str, parent: m.Region | None, level: str) -> m.Region:
    region = f.region(name)
    region.parent, region.level = parent, level
    db.session.flush()
    return region


def build_tree_world() -> TreeWorld:
    city = sub_region("树状市", None, "city")
    a, b = sub_region("树状甲区", city, "district"), sub_region("树状乙区", city, "district")
    other = sub_region("树外市", None, "city")
    w = TreeWorld(city, a, b, other)
    regions = {"a": a, "b": b, "c": city, "x": other}
    for key in LAB_KEYS:
        hospital = f.hospital(regions[key[0]], f"树{key.upper()}医院")
        w.labs[key] = f.lab(hospital, f"树{key.upper()}检验科")
    la = w.labs["a"]
    w.users = {
        "admin": f.user("admin"),
        "center": f.user("center", region_=city),
        "expert": f.user("expert", region_=city),
        "center_a": f.user("center", region_=a),
        "center_b": f.user("center", region_=b),
        "center_x": f.user("center", region_=other),
        "director": f.user("director", hospital_=la.hospital),
        "supervisor": f.user("supervisor", lab_=la),
        "technician": f.user("technician", lab_=la),
    }
    glu, lot = f.analyte(), f.qc_lot(2)
    w.systems = {key: f.test_system(lab, glu, lot) for key, lab in w.labs.items()}
    rng = np.random.default_rng(12)
    day = local_today().replace(day=1)
    for ts in w.systems.values():
        for run_no in range(1, 6):
            run = m.QcRun(test_system_id=ts.id, run_date=day, run_no=run_no, status="accept")
            db.session.add(run)
            db.session.flush()
            for lv in ts.levels:
                value = round(LEVEL_VALUES[lv.level_index] * (1 + rng.normal(0, 0.02)), 2)
                db.session.add(m.QcResult(run_id=run.id, qc_level_id=lv.id, version=1,
                                          is_current=True, value_text=f"{value:.2f}",
                                          value=value))
    db.session.flush()
    return w


# role -> labs it sees by name and raw data (the tree rule, written out by hand)
SEES = {
    "admin": set(LAB_KEYS),
    "center": {"a", "a2", "a3", "b", "b2", "b3", "c"},
    "expert": {"a", "a2", "a3", "b", "b2", "b3", "c"},
    "center_a": {"a", "a2", "a3"},
    "center_b": {"b", "b2", "b3"},
    "center_x": {"x"},
    "director": {"a"},
    "supervisor": {"a"},
    "technician": {"a"},
}
