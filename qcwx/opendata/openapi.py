"""The OpenAPI 3.0 document of the research API, built as data from the data set's columns.

Same error shape, key format and security schemes as the lab-interface API
(:mod:`qcwx.ingest.openapi`); the row schema comes from :data:`qcwx.opendata.columns.COLUMNS`,
so the document names exactly the fields the API serves (a test compares real answers).
"""

from __future__ import annotations

import copy
from typing import Any

from qcwx.ingest.openapi import ERROR_SCHEMA, SECURITY_SCHEMES, error_response
from qcwx.opendata.columns import COLUMNS

BASE_PATH = "/api/research/v1"
_TYPES = {"integer": {"type": "integer"}, "decimal": {"type": "number"},
          "date": {"type": "string", "format": "date"}, "string": {"type": "string"},
          "code": {"type": "string", "enum": ["accept", "warning", "reject"]}}
_NULLABLE = {"target_mean", "target_sd", "z", "qc_level"}


def _row_schema() -> dict[str, Any]:
    props = {}
    for c in COLUMNS:
        schema = dict(_TYPES[c.type], description=c.meaning)
        if c.name in _NULLABLE:
            schema["nullable"] = True
        props[c.name] = schema
    return {"type": "object", "required": [c.name for c in COLUMNS], "properties": props}


def _document() -> dict[str, Any]:
    errors = {"400": error_response("参数无效（中文说明与字段）"),
              "401": error_response("缺少、无效、已吊销或无 research 权限的 API 密钥"),
              "429": error_response("请求过于频繁（按密钥限流，默认每分钟 60 次）")}
    page = {"type": "object", "required": ["items", "next_cursor"], "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Row"}},
        "next_cursor": {"type": "string", "nullable": True,
                        "description": "下一页的游标；为 null 表示没有更多数据"}}}
    params = [
        {"name": "from", "in": "query", "required": True,
         "schema": {"type": "string", "format": "date"}, "description": "开始日期（含）"},
        {"name": "to", "in": "query", "required": True,
         "schema": {"type": "string", "format": "date"},
         "description": "结束日期（含，最多 366 天）"},
        {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "上一页返回的 next_cursor"},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 500}}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "qcwx 科研数据 API（去标识化室内质控数据，只读）", "version": "1.0.0",
                 "description": "经区域质控中心批准的科研用户以 research 权限的 API 密钥读取本区域"
                                "已判定的室内质控结果：项目 LOINC、单位 UCUM 编码，实验室与医院仅以"
                                "匿名编码出现，不含任何名称、人员或自由文本。"
                                "与导出的 CSV 字段相同。"},
        "servers": [{"url": BASE_PATH}],
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "paths": {
            "/openapi.json": {"get": {"summary": "本文档", "operationId": "openapi",
                                      "security": [], "responses": {"200": {
                                          "description": "OpenAPI 3.0 文档", "content": {
                                              "application/json": {"schema": {
                                                  "type": "object"}}}}}}},
            "/results": {"get": {
                "summary": "分页读取去标识化质控结果", "operationId": "getResults",
                "parameters": params,
                "responses": {"200": {"description": "一页结果", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}},
                    **errors}}},
            "/dictionary": {"get": {
                "summary": "数据字典", "operationId": "getDictionary",
                "responses": {"200": {"description": "每列的含义、类型、单位与编码体系",
                                      "content": {"application/json": {"schema": {
                                          "$ref": "#/components/schemas/Dictionary"}}}},
                              "401": errors["401"], "429": errors["429"]}}},
        },
        "components": {
            "securitySchemes": copy.deepcopy(SECURITY_SCHEMES),
            "schemas": {
                "Error": copy.deepcopy(ERROR_SCHEMA), "Row": _row_schema(), "Page": page,
                "Dictionary": {"type": "object", "required": ["columns"], "properties": {
                    "columns": {"type": "array", "items": {"type": "object", "required": [
                        "name", "meaning", "type", "unit", "code_system"]}}}},
            },
        },
    }


_CACHE = _document()


def document() -> dict[str, Any]:
    """Return a copy of the OpenAPI document."""
    return copy.deepcopy(_CACHE)
