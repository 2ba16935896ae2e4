"""A small region tree built with factories: one city, two districts, and a separate tree.

::

    城市 (city, root)          其他市 (another root, a separate tree)
    ├── 甲区 (district A)      └── hospital X · lab x
    │   └── hospital A · lab a
    ├── 乙区 (district B)
    │   └── hospital B · lab b
    └── hospital C (directly in the city) · lab c

Users: admin; ``center`` and ``expert`` at the city; ``center_a``/``center_b`` at the
districts; ``center_x`` at the other tree; director, supervisor and technician of lab a.
Every lab has one glucose test system on the same QC lot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qcwx import models as m
from qcwx.extensions import db
from tests import factories as f

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
    for key, region in (("a", a), ("b", b), ("c", city), ("x", other)):
        hospital = f.hospital(region, f"树{key.upper()}医院")
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
    return w


# role -> labs it sees by name and raw data (the tree rule, written out by hand)
SEES = {
    "admin": {"a", "b", "c", "x"},
    "center": {"a", "b", "c"},
    "expert": {"a", "b", "c"},
    "center_a": {"a"},
    "center_b": {"b"},
    "center_x": {"x"},
    "director": {"a"},
    "supervisor": {"a"},
    "technician": {"a"},
}
