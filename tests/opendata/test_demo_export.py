"""The seeded demo region's last full month exports: CSV, dictionary and valid FHIR, no names."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date

import pytest
from sqlalchemy import select

from qcwx import models as m
from qcwx.demo.seed import seed
from qcwx.extensions import db
from qcwx.opendata import dataset, fhir, writers
from qcwx.opendata.columns import NAMES
from tests.fixtures.app import rolled_back
from tests.opendata import support

pytestmark = pytest.mark.slow
END = date(2026, 12, 5)
MONTH = (date(2026, 11, 1), date(2026, 11, 30))


@pytest.fixture(scope="module")
def demo_zip(app, tmp_path_factory):
    """Seed 40 days once per backend, export November (every resource validated)."""
    with rolled_back(app):
        seed(days=40, end=END)
        db.session.flush()
        region = db.session.scalar(select(m.Region).where(m.Region.code == "DEMO"))
        ctx = dataset.build_context(region.id, "demo-secret")
        path = tmp_path_factory.mktemp("demo") / "demo.zip"
        summary = writers.write_export(path, dataset.iter_chunks(ctx, *MONTH),
                                       timestamp="2026-12-06T00:00:00Z", validate_every=1)
        expected = dataset.count_rows(region.id, *MONTH)
        secrets = support.identities()
        yield zipfile.ZipFile(path), summary, expected, secrets


def test_the_demo_month_exports_every_judged_result_and_validates_every_resource(demo_zip):
    zf, summary, expected, _ = demo_zip
    assert expected > 1000 and summary.rows == expected
    assert summary.validated == summary.resources  # every resource went through fhir.resources
    rows = list(csv.DictReader(io.StringIO(zf.read(writers.CSV_NAME).decode("utf-8"))))
    assert len(rows) == expected and tuple(rows[0]) == NAMES
    assert all(r["analyte_loinc"] and r["unit_ucum"] for r in rows)  # every demo row is coded
    assert {r["run_date"][:7] for r in rows} == {"2026-11"}
    bundles = [n for n in zf.namelist() if n.startswith("fhir/")]
    assert len(bundles) == summary.bundles == len({r["lab_code"] for r in rows})
    observations = 0
    for name in bundles:
        bundle = fhir.parse_bundle(zf.read(name))
        observations += sum(e.resource.get_resource_type() == "Observation"
                            for e in bundle.entry)
    assert observations == expected


def test_the_demo_export_names_no_lab_hospital_user_openid_or_free_text(demo_zip):
    zf, _, _, secrets = demo_zip
    assert any("人民医院" in s for s in secrets) and any(s.startswith("o") for s in secrets)
    for name in zf.namelist():
        text = zf.read(name).decode("utf-8")
        leaked = [s for s in secrets if len(s) >= 2 and s in text]
        assert not leaked, (name, leaked[:5])
