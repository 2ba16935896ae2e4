"""The Observation entry of :func:`qcwx.opendata.fhir.observation` as JSON text, fast.

A region-year is millions of Observations; building each as nested dicts and encoding them
costs more than everything else in an export. Everything constant per test system (codes,
unit, material, lot, device and lab references) is encoded once (:func:`_static`, cached) and
each row only formats its numbers. The text parses to exactly the dict ``observation``
returns — a test compares the two on every kind of row — and the exports validate parsed
entries with ``fhir.resources`` (:func:`qcwx.opendata.writers.write_export`).
"""

from __future__ import annotations

import json
from functools import lru_cache

from qcwx.catalog.codes import LOINC_SYSTEM, UCUM_SYSTEM
from qcwx.opendata import fhir

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_EXT = '{"url":"' + fhir.BASE
_INTERPRETATION = {
    status: _dumps([{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
         "code": code, "display": display},
        {"system": fhir.BASE + "run-status", "code": status, "display": fhir.STATUS_ZH[status]}]}])
    for status, (code, display) in fhir.INTERPRETATION.items()}
_CATEGORY = _dumps([{"coding": [{
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "laboratory", "display": "Laboratory"}]}])


@lru_cache(maxsize=8192)
def _static(analyte: str, loinc: str, display: str, unit: str, ucum: str, material: str,
            lot: str, method: str, device: str, lab: str) -> tuple[str, str, str]:
    """Return (quantity tail, text after the extensions' variable part, tail after value)."""
    qty = _dumps({"unit": unit, **({"system": UCUM_SYSTEM, "code": ucum} if ucum else {})})
    qty_tail = "," + qty[1:]
    coding = [{"system": fhir.BASE + "analyte", "code": analyte}]
    if loinc:
        coding.insert(0, {"system": LOINC_SYSTEM, "code": loinc, "display": display})
    head = (_dumps({"url": fhir.BASE + "qc-material", "valueString": material}) + ","
            + _dumps({"url": fhir.BASE + "qc-lot", "valueString": lot}))
    after = ('],"status":"final","category":' + _CATEGORY + ',"code":'
             + _dumps({"coding": coding, "text": analyte}))
    tail = (',"performer":[{"reference":' + _dumps(fhir.full_url("Organization", lab)) + '}]'
            + ',"device":{"reference":' + _dumps(fhir.full_url("Device", device)) + '}'
            + (',"method":' + _dumps({"coding": [{"system": fhir.BASE + "method",
                                                  "code": method}]}) if method else ""))
    return qty_tail, head, after + "\x00" + tail


def observation_entry(row: dict) -> str:
    """Return the bundle entry of ``row``'s Observation as JSON text (see the module doc)."""
    qty_tail, head, rest = _static(
        row["analyte_code"], row["analyte_loinc"], row["loinc_display"], row["unit"],
        row["unit_ucum"], row["qc_material"], row["qc_lot"], row["method_code"],
        row["device_code"], row["lab_code"])
    after, tail = rest.split("\x00")
    mean, sd, z = row["target_mean"], row["target_sd"], row["z"]
    ext = [head, f'{_EXT}qc-level","valueInteger":{_num(row["qc_level"])}}}',
           f'{_EXT}run-number","valueInteger":{row["run_no"]}}}']
    if mean is not None:
        ext.append(f'{_EXT}target-mean","valueQuantity":{{"value":{_num(mean)}{qty_tail}}}')
        ext.append(f'{_EXT}target-sd","valueQuantity":{{"value":{_num(sd)}{qty_tail}}}')
    if z is not None:
        ext.append(f'{_EXT}z-score","valueDecimal":{_num(z)}}}')
    ext += [f'{_EXT}westgard-rule","valueCode":{_dumps(r)}}}'
            for r in row["rules"].split(";") if r]
    rid = f"r{row['result_id']}"
    text = (f'{{"fullUrl":"{fhir.full_url("Observation", rid)}","resource":'
            f'{{"resourceType":"Observation","id":"{rid}","extension":[' + ",".join(ext)
            + after + f',"effectiveDateTime":"{row["run_date"]}"'
            + f',"valueQuantity":{{"value":{_num(row["value"])}{qty_tail}'
            + ',"interpretation":' + _INTERPRETATION[row["run_status"]] + tail)
    if mean is not None and sd:
        text += (f',"referenceRange":[{{"low":{{"value":{_num(mean - 2 * sd)}{qty_tail},'
                 f'"high":{{"value":{_num(mean + 2 * sd)}{qty_tail},"text":"靶值 ± 2SD"}}]')
    return text + "}}"


def _num(value) -> str:
    """Return a number as ``json`` writes it (``null`` for None)."""
    return "null" if value is None else repr(value)
