"""The OpenAPI 3.1 document of the lab-interface API, its schemas generated from models.

The request body's schema comes from the pydantic models the view validates with
(:class:`qcwx.ingest.schemas.ResultBatch`), the answers' from the response models below, so
the checks and the document cannot drift. Checked by ``tests/integration/
test_ingest_openapi.py`` (paths and methods equal the blueprint's routes, examples and real
answers validate) and fuzzed by ``tests/security/test_schemathesis.py``.
"""

from __future__ import annotations

import copy
from datetime import date
from typing import Any, Literal

from pydantic import ConfigDict, Field

from qcwx.ingest.schemas import MAX_ITEMS, ResultBatch
from qcwx.web.apischema import ResponseModel, components

BASE_PATH = "/api/ingest/v1"
#: The spellings ``POST /messages?format=`` accepts (:func:`qcwx.ingest.api.messages`).
MESSAGE_FORMAT_NAMES = ("astm", "hl7", "ASTM", "HL7")

#: The error body every API of qcwx answers, in OpenAPI 3.0 spelling for the research API's
#: 3.0 document (:mod:`qcwx.opendata.openapi`); this document uses the :class:`Error` model.
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "中文错误说明"},
        "field": {"type": "string", "nullable": True, "description": "出错的字段"},
    },
}


# ---------------------------------------------------------------- answers, as models
class Error(ResponseModel):
    """A whole-request error (4xx): a Chinese message and the field at fault."""

    error: str = Field(description="中文错误说明")
    field: str | None = Field(None, description="出错的字段")


class FiredRule(ResponseModel):
    """One Westgard rule that fired on the run."""

    model_config = ConfigDict(extra="allow")

    rule: str = Field(examples=["1-3s"])
    role: Literal["warning", "reject"]
    name: str | None = None
    error: str | None = None
    explanation: str | None = None
    levels: list[str] | None = None


class Verdict(ResponseModel):
    """The run's verdict (as on the phone); with many runs only the summary fields."""

    model_config = ConfigDict(extra="allow")

    run_id: int
    test_system_id: int
    run_date: date
    run_no: int
    status: Literal["accept", "warning", "reject", "pending"]
    status_label: Literal["在控", "警告", "失控", "待评价"]
    summary: str | None = None
    duplicate: bool | None = None
    action_id: int | None = None
    values: list[dict[str, Any]] | None = None
    rules: list[FiredRule]


class ItemOutcome(ResponseModel):
    """What happened to one item: stored, duplicate (already stored) or error."""

    index: int = Field(description="在请求/文件中的顺序（从 0 开始）")
    client_id: str | None = None
    status: Literal["stored", "duplicate", "error"]
    position: str = Field(description="位置（第 n 项 / 第 n 行 / 第 n 条消息…）")
    row: int | None = Field(None, description="表格文件中的行号（表头为第 1 行）")
    error: str | None = None
    field: str | None = None
    code: int | None = Field(None, description="错误类别，如 400 输入无效、404 无权访问、"
                                               "409 与已存数据冲突")
    retryable: bool | None = Field(None, description="为 true 时该项因并发写入未保存，"
                                                     "可原样重发（重发按 client_id 去重）")
    test_system_id: int | None = None
    level: int | None = None
    run_date: date | None = None
    run_no: int | None = None
    run_id: int | None = None
    verdict: Verdict | None = None


class ParseIssue(ResponseModel):
    """A row, frame or message the parser could not read."""

    position: str
    row: int | None = None
    field: str | None = None
    error: str


class Counts(ResponseModel):
    """Items per outcome; unreadable rows/frames count as errors."""

    stored: int = Field(ge=0)
    duplicate: int = Field(ge=0)
    error: int = Field(ge=0)


class ImportReport(ResponseModel):
    """The answer of every upload route: one outcome per item, parse problems, counts."""

    batch_id: int | None
    format: Literal["json", "csv", "xlsx", "astm", "hl7"]
    counts: Counts
    skipped_non_qc: int = Field(ge=0, description="跳过的非质控（患者）记录数")
    items: list[ItemOutcome]
    parse_errors: list[ParseIssue]


class Me(ResponseModel):
    """The key's lab (a connection check)."""

    lab_id: int
    lab: str
    key_prefix: str
    key_name: str


RESULTS_EXAMPLE = {
    "items": [
        {"client_id": "LIS-20261105-GLU-L1", "test_code": "GLU", "level": "1",
         "measured_at": "2026-11-05T08:30:00+08:00", "run_no": 1, "value": "5.62"},
        {"client_id": "LIS-20261105-GLU-L2", "test_code": "GLU", "level": "2",
         "measured_at": "2026-11-05T08:30:00+08:00", "run_no": 1, "value": "15.1"},
    ]
}
ASTM_EXAMPLE = ("H|\\^&|||Yumizen H500^2.1.0|||||||Q|LIS2-A2|20230329110631\r"
                "P|1\r"
                "O|1|PX440N||^^^DIF|||||||Q||||CTRL^^CTRL MEDIUM\r"
                "R|1|^^^WBC^6690-2|8.30|10E3/uL|7.30 - 9.30|N||||||20230329110631\r"
                "L|1|N\r")


def _error_response(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _report_response() -> dict:
    return {"description": "逐条处理结果（单条失败不影响其它条）",
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ImportReport"}}}}


#: Shared with the research API's document (:mod:`qcwx.opendata.openapi`): same errors, same keys.
ERROR_SCHEMA = _ERROR
error_response = _error_response
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "Authorization: Bearer qcwx_<前缀>_<密钥>"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}

_COMMON_ERRORS = {
    "400": _error_response("请求整体无效（中文说明与字段）"),
    "401": _error_response("缺少、无效或已吊销的 API 密钥"),
    "413": _error_response("请求体超过大小上限（默认 5 MB）或条数超过上限"),
    "429": _error_response("请求过于频繁（按密钥限流，默认每分钟 120 次）"),
}


def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qcwx 实验室接口 API（质控结果上传）",
            "version": "1.0.0",
            "description": (
                "LIS 或接口程序以实验室的 API 密钥上传室内质控结果。每条结果与手机录入走同一"
                "提交路径（同样的校验、Westgard 判定与失控提醒），以 client_id 去重，重发安全。"
                "时间不带时区时按实验室当地时间（Asia/Shanghai）解释。"),
        },
        "servers": [{"url": BASE_PATH}],
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "paths": _paths(),
        "components": _components(),
    }


def _paths() -> dict[str, Any]:
    """Return the routes of :mod:`qcwx.ingest.api`, as the test compares them."""
    return {
        "/openapi.json": {"get": {
            "summary": "本文档", "operationId": "openapi", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1 文档",
                                  "content": {"application/json": {"schema": {
                                      "type": "object"}}}}}}},
        "/me": {"get": {
            "summary": "查询密钥所属实验室（连接测试）", "operationId": "me",
            "responses": {"200": {"description": "密钥信息", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Me"}}}},
                "401": _COMMON_ERRORS["401"]}}},
        "/results": {"post": {
            "summary": "批量上传质控结果（JSON）", "operationId": "postResults",
            "description": f"每次最多 {MAX_ITEMS} 条；同一批次（检测系统、日期、批次号）的"
                           "各水平一起判定。",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ResultBatch"},
                "example": RESULTS_EXAMPLE}}},
            "responses": {"200": _report_response(), **_COMMON_ERRORS}}},
        "/messages": {"post": {
            "summary": "上传仪器原始消息（ASTM E1394 / HL7 v2）", "operationId": "postMessages",
            "description": "只保存质控记录（ASTM 处理标识 Q / 质控样本，HL7 MSH-16=2 等），"
                           "患者结果跳过；逐帧/逐条消息报告解析错误。",
            "parameters": [{"name": "format", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": list(MESSAGE_FORMAT_NAMES)},
                            "description": "不填则自动识别"}],
            "requestBody": {"required": True, "content": {
                "application/octet-stream": {"schema": {
                    "type": "string", "contentMediaType": "application/octet-stream"}},
                "text/plain": {"schema": {"type": "string"}, "example": ASTM_EXAMPLE}}},
            "responses": {"200": _report_response(), **_COMMON_ERRORS,
                          "415": _error_response("请以原始字节发送，不要用表单")}}},
        "/files": {"post": {
            "summary": "上传 LIS 导出的 CSV/XLSX 文件", "operationId": "postFiles",
            "description": "与网页“文件导入”的确认导入相同；可指定已保存的列映射。",
            "requestBody": {"required": True, "content": {"multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/FileUpload"}}}},
            "responses": {"200": _report_response(), **_COMMON_ERRORS,
                          "404": _error_response("列映射不存在")}}},
    }


def _components() -> dict[str, Any]:
    """Return the security schemes and the schemas, generated from the models."""
    return {
        "securitySchemes": copy.deepcopy(SECURITY_SCHEMES),
        "schemas": {
            **components(ResultBatch, Error, ImportReport, Me),
            "FileUpload": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "contentMediaType": "application/octet-stream"},
                "column_mapping": {"type": "string",
                                   "description": "已保存列映射的名称或编号（可选）"}}},
        },
    }


_CACHE = _document()


def document() -> dict[str, Any]:
    """Return a copy of the OpenAPI document (callers may not mutate the shared one)."""
    return copy.deepcopy(_CACHE)
