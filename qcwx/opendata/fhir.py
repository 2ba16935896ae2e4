"""FHIR R4 resources of the data set: one ``Bundle`` (type collection) per lab-month.

Validation uses ``fhir.resources`` 8.3 and its ``R4B`` models. Why R4B: the 6.x line (plain
R4 4.0.1) is built on pydantic 1 and does not import next to the pydantic 2 this project
runs; 7+/8 default to R5 and ship R4B (4.3.0) beside it. R4B changed only the medication
definition, evidence and subscription resources; ``Bundle``, ``Observation``, ``Device`` and
``Organization`` as used here are the same in R4 and R4B, so an R4 server reads these files.

Each bundle holds the anonymous hospital ``Organization``, the anonymous lab
``Organization`` (``partOf`` the hospital), one ``Device`` per analyser (maker and model,
never the serial) and one ``Observation`` per judged QC result:

* ``category`` laboratory; ``code`` the LOINC code (plus the local analyte code);
* ``valueQuantity`` in the lab's unit with its UCUM code; ``effectiveDateTime`` the run date;
* ``interpretation`` from the run verdict (v3 ObservationInterpretation: accept → N,
  warning → A, reject → AA) plus the verdict itself (``urn:qcwx:fhir:run-status``);
* ``referenceRange`` target mean ± 2 SD; ``method`` the method code; ``device``/``performer``;
* QC material, lot, level, target mean/SD, z and the Westgard rules as extensions whose URLs
  are listed in :data:`EXTENSIONS` (documented in the README and the data dictionary).

A QC result has no patient, so ``subject`` is absent.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from functools import lru_cache
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.organization import Organization

from qcwx.catalog.codes import LOINC_SYSTEM, UCUM_SYSTEM

BASE = "urn:qcwx:fhir:"
EXTENSIONS = {
    "qc-material": "质控品（厂家 名称），valueString",
    "qc-lot": "质控品批号，valueString",
    "qc-level": "质控水平序号，valueInteger",
    "target-mean": "靶值，valueQuantity（UCUM）",
    "target-sd": "标准差，valueQuantity（UCUM）",
    "z-score": "z 分数，valueDecimal",
    "westgard-rule": "触发的 Westgard 规则，valueCode，可重复",
    "run-number": "当日批次号，valueInteger",
    "hospital-level": "医院等级，valueString（Organization）",
    "hospital-type": "医院类型，valueString（Organization）",
}
INTERPRETATION = {"accept": ("N", "Normal"), "warning": ("A", "Abnormal"),
                  "reject": ("AA", "Critical abnormal")}
STATUS_ZH = {"accept": "在控", "warning": "警告", "reject": "失控"}
MODELS = {"Observation": Observation, "Device": Device, "Organization": Organization}
_NS = uuid.UUID("5b7f0c1e-9a43-4d0e-8a51-6a1f7e0c2d9b")
_NS_BYTES = _NS.bytes


@lru_cache(maxsize=4096)
def full_url(kind: str, ident: str) -> str:
    """Return the bundle-local URL of a resource (a name-based UUID: stable across exports).

    The UUID is RFC 4122 version 5 (SHA-1 of namespace and name), built by hand because
    ``uuid.UUID`` objects cost more than the rest of an Observation; a test compares the two.
    """
    digest = bytearray(hashlib.sha1(_NS_BYTES + f"{kind}/{ident}".encode(),
                                    usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ext(name: str, **value: Any) -> dict:
    return {"url": BASE + name, **value}


def _quantity(value: float | None, row: dict) -> dict:
    out: dict[str, Any] = {"value": value, "unit": row["unit"]}
    if row["unit_ucum"]:
        out.update(system=UCUM_SYSTEM, code=row["unit_ucum"])
    return out


def organizations(row: dict) -> list[dict]:
    """Return the anonymous hospital and lab organisations of a row (no names)."""
    hospital = {"resourceType": "Organization", "id": row["hospital_code"],
                "identifier": [{"system": BASE + "hospital", "value": row["hospital_code"]}],
                "active": True, "name": f"医院 {row['hospital_code']}",
                "extension": [_ext("hospital-level", valueString=row["hospital_level"]),
                              _ext("hospital-type", valueString=row["hospital_type"])]}
    lab = {"resourceType": "Organization", "id": row["lab_code"],
           "identifier": [{"system": BASE + "lab", "value": row["lab_code"]}],
           "active": True, "name": f"实验室 {row['lab_code']}",
           "partOf": {"reference": full_url("Organization", row["hospital_code"])}}
    return [hospital, lab]


def device(row: dict) -> dict:
    """Return the analyser as maker and model (the pseudonymous code identifies it)."""
    return {"resourceType": "Device", "id": row["device_code"],
            "identifier": [{"system": BASE + "device", "value": row["device_code"]}],
            "manufacturer": row["instrument_maker"],
            "deviceName": [{"name": row["instrument_model"], "type": "model-name"}],
            "owner": {"reference": full_url("Organization", row["lab_code"])}}


def observation(row: dict) -> dict:
    """Return one judged QC result as an Observation."""
    coding = [{"system": BASE + "analyte", "code": row["analyte_code"]}]
    if row["analyte_loinc"]:
        coding.insert(0, {"system": LOINC_SYSTEM, "code": row["analyte_loinc"],
                          "display": row["loinc_display"]})
    status = row["run_status"]
    code, display = INTERPRETATION[status]
    ext = [_ext("qc-material", valueString=row["qc_material"]),
           _ext("qc-lot", valueString=row["qc_lot"]),
           _ext("qc-level", valueInteger=row["qc_level"]),
           _ext("run-number", valueInteger=row["run_no"])]
    if row["target_mean"] is not None:
        ext.append(_ext("target-mean", valueQuantity=_quantity(row["target_mean"], row)))
        ext.append(_ext("target-sd", valueQuantity=_quantity(row["target_sd"], row)))
    if row["z"] is not None:
        ext.append(_ext("z-score", valueDecimal=row["z"]))
    ext += [_ext("westgard-rule", valueCode=r) for r in row["rules"].split(";") if r]
    obs: dict[str, Any] = {
        "resourceType": "Observation", "id": f"r{row['result_id']}", "extension": ext,
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory", "display": "Laboratory"}]}],
        "code": {"coding": coding, "text": row["analyte_code"]},
        "effectiveDateTime": row["run_date"],
        "performer": [{"reference": full_url("Organization", row["lab_code"])}],
        "valueQuantity": _quantity(row["value"], row),
        "interpretation": [{"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
             "code": code, "display": display},
            {"system": BASE + "run-status", "code": status, "display": STATUS_ZH[status]}]}],
        "device": {"reference": full_url("Device", row["device_code"])},
    }
    if row["method_code"]:
        obs["method"] = {"coding": [{"system": BASE + "method", "code": row["method_code"]}]}
    if row["target_mean"] is not None and row["target_sd"]:
        mean, sd = row["target_mean"], row["target_sd"]
        obs["referenceRange"] = [{"low": _quantity(mean - 2 * sd, row),
                                  "high": _quantity(mean + 2 * sd, row), "text": "靶值 ± 2SD"}]
    return obs


def validate(resource: dict) -> None:
    """Validate one resource with its ``fhir.resources`` R4B model; raise on any error."""
    MODELS[resource["resourceType"]].model_validate(resource)


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def entry(resource: dict) -> str:
    """Return a bundle entry as JSON text (the resource under its stable full URL)."""
    return _ENCODE({"fullUrl": full_url(resource["resourceType"], resource["id"]),
                    "resource": resource})


def bundle_head(lab_code: str, month: str, timestamp: str) -> str:
    """Return the JSON text that opens a lab-month bundle (entries follow, comma-separated)."""
    head = {"resourceType": "Bundle", "id": f"{lab_code}-{month}",
            "identifier": {"system": BASE + "bundle", "value": f"{lab_code}-{month}"},
            "type": "collection", "timestamp": timestamp}
    return json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"entry":['


BUNDLE_TAIL = "]}"


def parse_bundle(text: str | bytes) -> Bundle:
    """Parse and validate a whole bundle file (what a reader of the export does)."""
    return Bundle.model_validate_json(text)
