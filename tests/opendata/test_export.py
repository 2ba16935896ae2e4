"""The de-identified export: rows recomputed, CSV + dictionary, valid FHIR, no identities."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle

from qcwx.opendata import dataset, fhir, writers
from qcwx.opendata.columns import NAMES
from tests.opendata import support
from tests.opendata.support import MEANS, RUNS, SDS


def _rows(j) -> list[dict]:
    ctx = dataset.build_context(j.world.region1.id, "test-secret")
    return [r for chunk in dataset.iter_chunks(ctx, j.start, j.end, chunk=2) for r in chunk]


def _zip(j, tmp_path) -> zipfile.ZipFile:
    ctx = dataset.build_context(j.world.region1.id, "test-secret")
    path = tmp_path / "export.zip"
    writers.write_export(path, dataset.iter_chunks(ctx, j.start, j.end, chunk=3),
                         timestamp="2026-12-01T00:00:00Z")
    return zipfile.ZipFile(path)


def test_rows_recompute_values_targets_z_and_codes_for_the_region_only(judged):
    rows = _rows(judged)
    w = judged.world
    expected = []
    for key, day, v1, v2 in RUNS:
        if key == "c":
            continue  # region 2
        lab = w.systems[key].lab
        for level, text in ((1, v1), (2, v2)):
            z = (float(text) - MEANS[level]) / SDS[level]
            expected.append((lab.anon_code, (judged.start + timedelta(days=day - 1)).isoformat(),
                             level, float(text), round(z, 4)))
    got = [(r["lab_code"], r["run_date"], r["qc_level"], r["value"], r["z"]) for r in rows]
    assert sorted(got) == sorted(expected)
    assert {r["analyte_loinc"] for r in rows} == {"14749-6"}
    assert {(r["unit"], r["unit_ucum"]) for r in rows} == {("mmol/L", "mmol/L")}
    assert {r["target_mean"] for r in rows} == {5.0, 15.0}
    reject = [r for r in rows if r["run_date"] == (judged.start + timedelta(days=2)).isoformat()
              and r["lab_code"] == w.lab_a.anon_code]
    assert {r["run_status"] for r in reject} == {"reject"}
    assert "1-3s" in reject[0]["rules"].split(";")
    assert len({r["hospital_code"] for r in rows}) == 2
    assert all(r["hospital_code"] not in (w.hosp1.code, w.hosp2.code) for r in rows)


def test_csv_has_every_row_and_the_dictionary_one_row_per_column(judged, tmp_path):
    zf = _zip(judged, tmp_path)
    table = list(csv.reader(io.StringIO(zf.read(writers.CSV_NAME).decode("utf-8"))))
    assert tuple(table[0]) == NAMES and len(table) - 1 == 10
    dictionary = list(csv.DictReader(io.StringIO(zf.read(writers.DICTIONARY_NAME).decode())))
    assert [d["name"] for d in dictionary][:len(NAMES)] == list(NAMES)
    assert all(d["meaning"] and d["type"] for d in dictionary)
    coded = {d["name"]: d["code_system"] for d in dictionary}
    assert "LOINC" in coded["analyte_loinc"] and "UCUM" in coded["unit_ucum"]


def test_one_bundle_per_lab_month_round_trips_and_validates(judged, tmp_path):
    zf = _zip(judged, tmp_path)
    names = sorted(n for n in zf.namelist() if n.startswith("fhir/"))
    month = judged.start.strftime("%Y-%m")
    w = judged.world
    assert names == sorted(f"fhir/{lab.anon_code}-{month}.json" for lab in (w.lab_a, w.lab_b))
    for name in names:
        text = zf.read(name).decode("utf-8")
        original = json.loads(text)
        bundle = Bundle.model_validate_json(text)
        again = json.loads(bundle.model_dump_json(exclude_none=True))
        assert again == original  # nothing lost or altered by the R4 model
        kinds = [e["resource"]["resourceType"] for e in original["entry"]]
        assert kinds[:2] == ["Organization", "Organization"] and kinds.count("Device") == 1
        urls = {e["fullUrl"] for e in original["entry"]}
        for e in original["entry"]:
            res = e["resource"]
            fhir.validate(res)
            if res["resourceType"] == "Observation":
                assert res["code"]["coding"][0] == {
                    "system": "http://loinc.org", "code": "14749-6",
                    "display": "Glucose [Moles/volume] in Serum or Plasma"}
                assert res["category"][0]["coding"][0]["code"] == "laboratory"
                q = res["valueQuantity"]
                assert (q["system"], q["code"]) == ("http://unitsofmeasure.org", "mmol/L")
                assert res["device"]["reference"] in urls
                assert res["performer"][0]["reference"] in urls
                assert "subject" not in res
    lab_a = json.loads(zf.read(f"fhir/{w.lab_a.anon_code}-{month}.json"))
    interp = {e["resource"]["effectiveDateTime"]: e["resource"]["interpretation"][0]["coding"][0]
              ["code"] for e in lab_a["entry"] if e["resource"]["resourceType"] == "Observation"}
    assert interp[(judged.start + timedelta(days=2)).isoformat()] == "AA"
    assert interp[judged.start.isoformat()] == "N"


def test_a_malformed_resource_is_refused_by_the_validator():
    bad = {"resourceType": "Observation", "status": "final", "code": {"text": "GLU"},
           "valueQuantity": {"value": "not a number"}}
    with pytest.raises(ValueError):
        fhir.validate(bad)


def test_no_name_user_openid_serial_or_free_text_in_any_exported_file(judged, tmp_path):
    zf = _zip(judged, tmp_path)
    secrets = support.identities()
    for value in support.SECRETS.values():
        assert value in secrets  # the scan really looks for the planted values
    for name in zf.namelist():
        text = zf.read(name).decode("utf-8")
        leaked = [s for s in secrets if len(s) >= 2 and s in text]
        assert not leaked, (name, leaked)


def test_bundle_urls_are_rfc_4122_name_based_uuids():
    import uuid

    for kind, ident in (("Observation", "r1"), ("Device", "D0A1B2C3D4E"), ("Organization", "L001")):
        assert fhir.full_url(kind, ident) == f"urn:uuid:{uuid.uuid5(fhir._NS, f'{kind}/{ident}')}"


def test_the_fast_observation_text_is_exactly_the_observation(judged):
    from qcwx.opendata.fhir_text import observation_entry

    rows = _rows(judged)
    bare = {**rows[0], "analyte_loinc": "", "unit_ucum": "", "method_code": "",
            "target_mean": None, "target_sd": None, "z": None, "qc_level": None}
    ruled = {**rows[0], "rules": "1-3s;R-4s", "run_status": "reject", "value": 7,
             "loinc_display": 'quote " and 中文'}
    for row in [*rows, bare, ruled]:
        parsed = json.loads(observation_entry(row))
        expected = json.loads(fhir.entry(fhir.observation(row)))
        assert parsed == expected
