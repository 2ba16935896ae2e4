"""The OpenAPI 3.0 document of the lab-interface API, built as data.

Kept next to the blueprint and checked by ``tests/integration/test_ingest_openapi.py``: its
paths and methods must equal the blueprint's routes, its examples must validate against its
own schemas, and real responses must validate against the response schemas — so the
document cannot drift from the code a LIS vendor integrates against.
"""

from __future__ import annotations

import copy
from typing import Any

BASE_PATH = "/api/ingest/v1"
MAX_ITEMS = 1000

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "中文错误说明"},
        "field": {"type": "string", "nullable": True, "description": "出错的字段"},
    },
}

_RESULT_ITEM = {
    "type": "object",
    "required": ["client_id", "value"],
    "properties": {
        "client_id": {"type": "string", "minLength": 1, "maxLength": 64,
                      "description": "每条结果的唯一编号；重发同一编号不会重复保存"},
        "test_code": {"type": "string", "maxLength": 64,
                      "description": "仪器/LIS 项目代码（按项目映射或项目代码对应检测系统）"},
        "test_system_id": {"type": "integer", "minimum": 1,
                           "description": "直接指定检测系统（与 test_code 二选一）"},
        "level": {"oneOf": [{"type": "string", "maxLength": 32}, {"type": "integer"}],
                  "description": "质控水平：1/2/3、L/M/H、水平1 等"},
        "qc_lot": {"type": "string", "maxLength": 64, "description": "质控品批号（可选）"},
        "instrument": {"type": "string", "maxLength": 128,
                       "description": "仪器序列号、名称或型号（同一批号在多台仪器上检测时必填，"
                                      "用于区分检测系统）"},
        "measured_at": {"type": "string", "format": "date-time",
                        "description": "检测时间 ISO 8601；不带时区按实验室当地时间"},
        "run_date": {"type": "string", "format": "date", "description": "检测日期（当地）"},
        "run_no": {"type": "integer", "minimum": 1, "maximum": 99, "description": "当天批次"},
        "value": {"oneOf": [{"type": "string", "maxLength": 32}, {"type": "number"}],
                  "description": "结果；建议以文字发送以保留小数位"},
        "loinc": {"type": "string", "maxLength": 10, "example": "14749-6",
                  "description": "仪器发送的 LOINC 编码（可选）：项目代码无映射时用于匹配检测系统，"
                                 "并与所映射项目的 LOINC 核对"},
    },
}

_RULE = {
    "type": "object",
    "required": ["rule", "role"],
    "properties": {
        "rule": {"type": "string", "example": "1-3s"},
        "role": {"type": "string", "enum": ["warning", "reject"]},
        "name": {"type": "string"},
        "error": {"type": "string"},
        "explanation": {"type": "string"},
        "levels": {"type": "array", "items": {"type": "string"}},
    },
}

_VERDICT = {
    "type": "object",
    "description": "该批次的判定（与手机录入相同）；批次很多时只给出摘要字段",
    "required": ["run_id", "test_system_id", "run_date", "run_no", "status", "status_label",
                 "rules"],
    "properties": {
        "run_id": {"type": "integer"},
        "test_system_id": {"type": "integer"},
        "run_date": {"type": "string", "format": "date"},
        "run_no": {"type": "integer"},
        "status": {"type": "string", "enum": ["accept", "warning", "reject", "pending"]},
        "status_label": {"type": "string", "enum": ["在控", "警告", "失控", "待评价"]},
        "summary": {"type": "string"},
        "duplicate": {"type": "boolean"},
        "action_id": {"type": "integer", "nullable": True},
        "values": {"type": "array", "items": {"type": "object"}},
        "rules": {"type": "array", "items": {"$ref": "#/components/schemas/FiredRule"}},
    },
}

_OUTCOME = {
    "type": "object",
    "required": ["index", "status", "position"],
    "properties": {
        "index": {"type": "integer", "description": "在请求/文件中的顺序（从 0 开始）"},
        "client_id": {"type": "string", "nullable": True},
        "status": {"type": "string", "enum": ["stored", "duplicate", "error"]},
        "position": {"type": "string", "description": "位置（第 n 项 / 第 n 行 / 第 n 条消息…）"},
        "row": {"type": "integer", "description": "表格文件中的行号（表头为第 1 行）"},
        "error": {"type": "string"},
        "field": {"type": "string", "nullable": True},
        "code": {"type": "integer", "description": "错误类别，如 400 输入无效、404 无权访问、"
                 "409 与已存数据冲突"},
        "retryable": {"type": "boolean", "description": "为 true 时该项因并发写入未保存，"
                      "可原样重发（重发按 client_id 去重）"},
        "test_system_id": {"type": "integer", "nullable": True},
        "level": {"type": "integer", "nullable": True},
        "run_date": {"type": "string", "format": "date", "nullable": True},
        "run_no": {"type": "integer", "nullable": True},
        "run_id": {"type": "integer", "nullable": True},
        "verdict": {"allOf": [{"$ref": "#/components/schemas/Verdict"}], "nullable": True},
    },
}

_REPORT = {
    "type": "object",
    "required": ["batch_id", "format", "counts", "items", "parse_errors", "skipped_non_qc"],
    "properties": {
        "batch_id": {"type": "integer", "nullable": True},
        "format": {"type": "string", "enum": ["json", "csv", "xlsx", "astm", "hl7"]},
        "counts": {
            "type": "object", "required": ["stored", "duplicate", "error"],
            "properties": {k: {"type": "integer", "minimum": 0}
                           for k in ("stored", "duplicate", "error")},
        },
        "skipped_non_qc": {"type": "integer", "minimum": 0,
                           "description": "跳过的非质控（患者）记录数"},
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/ItemOutcome"}},
        "parse_errors": {"type": "array", "items": {"$ref": "#/components/schemas/ParseIssue"}},
    },
}

_PARSE_ISSUE = {
    "type": "object",
    "required": ["position", "error"],
    "properties": {
        "position": {"type": "string"},
        "row": {"type": "integer", "nullable": True},
        "field": {"type": "string", "nullable": True},
        "error": {"type": "string"},
    },
}

_ME = {
    "type": "object",
    "required": ["lab_id", "lab", "key_prefix", "key_name"],
    "properties": {"lab_id": {"type": "integer"}, "lab": {"type": "string"},
                   "key_prefix": {"type": "string"}, "key_name": {"type": "string"}},
}

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
        "openapi": "3.0.3",
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
            "responses": {"200": {"description": "OpenAPI 3.0 文档",
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
                            "schema": {"type": "string", "enum": ["astm", "hl7"]},
                            "description": "不填则自动识别"}],
            "requestBody": {"required": True, "content": {
                "application/octet-stream": {"schema": {"type": "string",
                                                        "format": "binary"}},
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
    """Return the security schemes and the schemas the paths refer to."""
    return {
        "securitySchemes": copy.deepcopy(SECURITY_SCHEMES),
        "schemas": {
            "Error": _ERROR,
            "ResultItem": _RESULT_ITEM,
            "ResultBatch": {"type": "object", "required": ["items"], "properties": {
                "items": {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS,
                          "items": {"$ref": "#/components/schemas/ResultItem"}}}},
            "FiredRule": _RULE,
            "Verdict": _VERDICT,
            "ItemOutcome": _OUTCOME,
            "ParseIssue": _PARSE_ISSUE,
            "ImportReport": _REPORT,
            "Me": _ME,
            "FileUpload": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"},
                "column_mapping": {"type": "string",
                                   "description": "已保存列映射的名称或编号（可选）"}}},
        },
    }


_CACHE = _document()


def document() -> dict[str, Any]:
    """Return a copy of the OpenAPI document (callers may not mutate the shared one)."""
    return copy.deepcopy(_CACHE)
