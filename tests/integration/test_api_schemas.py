"""The JSON bodies are declared once: the models check them and generate the documents.

Pure checks of :mod:`qcwx.web.apischema` (messages in Chinese naming the field, the number,
date and text types) and of both OpenAPI documents: their request schemas are exactly what
the models generate, so the check and the document cannot drift apart.
"""

from __future__ import annotations

import pytest
from pydantic import Field

from miniprogram_api import schemas as mp_schemas
from miniprogram_api.answers import RESPONSE_MODELS
from miniprogram_api.openapi import openapi_document
from qcwx.errors import UserError
from qcwx.ingest import openapi as ingest_openapi
from qcwx.ingest.schemas import ResultBatch, candidates_from_json
from qcwx.iqc.validation import EntryRunSubmission
from qcwx.web.apischema import (
    ApiModel,
    FiniteNumber,
    Id,
    PlausibleDate,
    RunNo,
    components,
    parse,
    text,
)


class Sample(ApiModel):
    """A body with one field of each shared type."""

    name: text(8) = Field(title="名称")
    ts: Id = Field(title="检测系统")
    run_no: RunNo | None = Field(None, title="批次号")
    value: FiniteNumber | None = Field(None, title="结果")
    day: PlausibleDate | None = Field(None, title="检测日期")


def _refused(data) -> dict:
    with pytest.raises(UserError) as caught:
        parse(Sample, data)
    assert caught.value.status == 400
    return caught.value.to_dict()


OK = {"name": "甲", "ts": 1}


@pytest.mark.parametrize("change, answer", [
    ({"name": None}, {"error": "请填写名称", "field": "name"}),
    ({"name": "   "}, {"error": "请填写名称", "field": "name"}),
    ({"name": 42}, {"error": "名称必须是字符串", "field": "name"}),
    ({"name": "x" * 9}, {"error": "名称过长（最多8个字符）", "field": "name"}),
    ({"name": "\ud800"}, {"error": "名称含有无效字符（孤立的 Unicode 代理码位）", "field": "name"}),
    ({"ts": "5"}, {"error": "检测系统必须是整数", "field": "ts"}),
    ({"ts": True}, {"error": "检测系统必须是整数", "field": "ts"}),
    ({"ts": 2**70}, {"error": "检测系统必须在 1–2147483647 之间", "field": "ts"}),
    ({"run_no": 1.5}, {"error": "批次号必须是整数", "field": "run_no"}),
    ({"run_no": float("inf")}, {"error": "批次号必须是整数", "field": "run_no"}),
    ({"run_no": 100}, {"error": "批次号必须在 1–99 之间", "field": "run_no"}),
    ({"value": float("nan")}, {"error": "结果必须是有限的数字", "field": "value"}),
    ({"value": "5"}, {"error": "结果必须是整数", "field": "value"}),
    ({"day": 20261201}, {"error": "检测日期必须是字符串", "field": "day"}),
    ({"day": "2026-13-01"}, {"error": "检测日期格式无效，应为 YYYY-MM-DD", "field": "day"}),
    ({"day": "0001-01-01"}, {"error": "日期 0001-01-01 不在合理范围内（1990–2099 年）",
                             "field": "day"}),
    ({"other": 1}, {"error": "不支持的字段“other”", "field": "other"}),
])
def test_a_bad_field_is_a_chinese_400_naming_it(change, answer):
    assert _refused(OK | change) == answer


def test_a_body_that_is_not_an_object_is_refused_as_the_body():
    assert _refused([OK]) == {"error": "请求内容必须是 JSON 对象", "field": "body"}


def test_good_values_come_back_typed():
    data = parse(Sample, OK | {"name": " 甲 ", "run_no": 2.0, "value": 5.5, "day": "2026-11-05"})
    assert (data.name, data.run_no, data.value, data.day.isoformat()) == (
        "甲", 2, 5.5, "2026-11-05")


def test_generated_schemas_carry_the_bounds_and_no_english_titles():
    schema = components(Sample)["Sample"]
    props = schema["properties"]
    assert schema["additionalProperties"] is False and schema["required"] == ["name", "ts"]
    assert props["name"] == {"type": "string", "minLength": 1, "maxLength": 8, "title": "名称"}
    assert props["ts"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1,
                           "title": "检测系统"}
    assert "description" not in schema  # the docstring is not the callers' documentation


def test_the_mini_program_document_holds_exactly_the_generated_schemas():
    doc = openapi_document()["components"]["schemas"]
    generated = components(*mp_schemas.REQUEST_MODELS, *RESPONSE_MODELS)
    assert {name: doc[name] for name in generated} == generated
    for path, ops in openapi_document()["paths"].items():
        for op in ops.values():
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[1] in generated, path


def test_the_ingest_document_holds_exactly_the_generated_schemas():
    doc = ingest_openapi.document()
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]
    generated = components(ResultBatch, ingest_openapi.Error, ingest_openapi.ImportReport,
                           ingest_openapi.Me)
    assert {name: schemas[name] for name in generated} == generated
    item = schemas["ResultItem"]
    assert item["properties"]["client_id"]["maxLength"] == 64
    assert "additionalProperties" not in item  # unknown keys are ignored, as documented


def test_mini_program_run_keys_its_level_errors_as_the_entry_form_does():
    ts = {"test_system_id": 1, "client_id": "c1"}
    with pytest.raises(UserError) as caught:
        parse(mp_schemas.RunSubmission, ts | {"values": {"2": [5]}})
    assert caught.value.field == "level_2"
    with pytest.raises(UserError) as caught:
        parse(mp_schemas.RunSubmission, ts | {"values": {"水平1": {"v": 5}}})
    assert caught.value.field == "values"
    with pytest.raises(UserError) as caught:
        parse(mp_schemas.RunSubmission, ts | {"values": {}})
    assert caught.value.to_dict() == {"error": "请至少填写一个水平的结果", "field": "values"}


@pytest.mark.parametrize("run_no, expected", [("", None), (" 3 ", 3), (4, 4), (None, None)])
def test_entry_page_json_takes_the_form_text_it_sends(run_no, expected):
    data = parse(EntryRunSubmission, {"values": {"1": "5.0", "2": ""}, "run_no": run_no,
                                      "run_date": "", "client_id": "", "channel": "mp"})
    assert data.run_no == expected and data.run_date is None
    assert data.level_texts() == {"1": "5.0", "2": ""}


@pytest.mark.parametrize("run_no", ["x", "²", "100", 1.5, [1]])
def test_entry_page_json_refuses_a_run_number_that_is_not_one(run_no):
    with pytest.raises(UserError) as caught:
        parse(EntryRunSubmission, {"values": {"1": "5.0"}, "run_no": run_no})
    assert caught.value.field == "run_no"


def _item(**change) -> dict:
    return {"client_id": "c1", "test_code": "GLU", "level": 1, "value": "5.0",
            "run_date": "2026-11-05"} | change


def test_ingest_items_ignore_unknown_keys_and_take_empty_texts_as_absent():
    cands, problems = candidates_from_json([_item(unit="mmol/L", qc_lot="", instrument=" ",
                                                  value=5.25)])
    assert problems == {}
    assert (cands[0].value_text, cands[0].qc_lot, cands[0].instrument, cands[0].level) == (
        "5.25", None, None, "1")


@pytest.mark.parametrize("change, field", [
    ({"client_id": None}, "client_id"),
    ({"client_id": "x" * 65}, "client_id"),
    ({"test_system_id": "5", "test_code": None}, "test_system_id"),
    ({"test_system_id": 2**31}, "test_system_id"),
    ({"test_code": None}, "test_code"),
    ({"value": True}, "value"),
    ({"value": float("inf")}, "value"),
    ({"value": "1" * 33}, "value"),
    ({"run_date": None}, "measured_at"),
    ({"run_date": "9999-12-31"}, "run_date"),
    ({"measured_at": 1700000000}, "measured_at"),
    ({"run_no": "1"}, "run_no"),
    ({"level": [1]}, "level"),
    ({"loinc": "1" * 11}, "loinc"),
])
def test_an_ingest_item_is_refused_alone_naming_its_field(change, field):
    cands, problems = candidates_from_json([_item(**change), _item(client_id="c2")])
    assert list(problems) == [0] and problems[0].field == field
    assert any("\u4e00" <= ch <= "\u9fff" for ch in problems[0].message)
    assert cands[1].client_id == "c2"
