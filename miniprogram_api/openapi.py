"""The OpenAPI 3.1 document of ``/api/mp/v1`` (served as ``openapi.json``).

Its schemas are generated from pydantic models: the request bodies from the ones the views
validate with (:mod:`miniprogram_api.schemas`), the answers from :mod:`miniprogram_api.answers`,
so the document and the checks cannot drift. The paths are written here and kept honest by
tests: every blueprint route appears with its methods and no other path does, every example
validates against its schema, and real answers of the test suite and of the schemathesis run
validate against the documented schemas.
"""

from __future__ import annotations

import copy
from typing import Any

from miniprogram_api.answers import RESPONSE_MODELS
from miniprogram_api.schemas import REQUEST_MODELS
from qcwx.web.apischema import components

API_PREFIX = "/api/mp/v1"

INT = {"type": "integer"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


USER_EXAMPLE = {"id": 7, "username": "tech", "display_name": "王技师", "role": "technician",
                "role_label": "检验技师",
                "lab": {"id": 3, "name": "检验科", "full_name": "市第一人民医院·检验科"}}
VERDICT_EXAMPLE = {
    "run_id": 120, "test_system_id": 5, "run_date": "2026-11-25", "run_no": 1,
    "status": "reject", "status_label": "失控",
    "summary": "质控失控！请暂停发出本批患者报告，查找原因并填写失控处理记录。",
    "duplicate": False, "action_id": 31,
    "values": [{"level_id": 9, "level_name": "水平1", "value_text": "5.64", "value": 5.64,
                "target_mean": 5.0, "target_sd": 0.2, "z": 3.2},
               {"level_id": 10, "level_name": "水平2", "value_text": "15.05", "value": 15.05,
                "target_mean": 15.0, "target_sd": 0.5, "z": 0.1}],
    "rules": [{"rule": "1-3s", "role": "reject", "name": "单值超出3倍标准差",
               "error": "随机误差或大的系统误差", "explanation": "一个质控结果超出均值±3倍标准差。",
               "levels": ["水平1"]}],
}
RUN_EXAMPLE = {"run_id": 120, "run_date": "2026-11-25", "run_no": 1, "status": "reject",
               "status_label": "失控", "rules": ["1-3s"],
               "values": [{"level_id": 9, "level": "水平1", "value": "5.64", "z": 3.2,
                           "rules": ["1-3s"]},
                          {"level_id": 10, "level": "水平2", "value": "15.05", "z": 0.1,
                           "rules": []}]}
ALERT_EXAMPLE = {"id": 44, "kind": "run_reject", "kind_label": "质控失控",
                 "title": "葡萄糖质控失控（2026-11-25 第1批）", "run_id": 120,
                 "test_system_id": 5, "rules": ["1-3s"], "time": "2026-11-25 09:12",
                 "created_at": "2026-11-25T09:12:03+08:00", "delivery_status": "sent",
                 "delivery_status_label": "已发送", "acked": True,
                 "acked_at": "2026-11-25T09:20:41+08:00", "acked_by": "李主管"}

SCHEMAS: dict[str, Any] = {
    # Answers and request bodies: generated from the models the presenters' output is
    # checked against and the views validate with, so the document cannot drift from them.
    **components(*RESPONSE_MODELS),
    **components(*REQUEST_MODELS),
    "OpenApiDocument": {"type": "object", "required": ["openapi", "paths"]},
}


def _json(schema: str, example: Any = None) -> dict:
    body: dict[str, Any] = {"schema": _ref(schema)}
    if example is not None:
        body["example"] = example
    return {"content": {"application/json": body}}


def _error(description: str, message: str, field: str | None) -> dict:
    return {"description": description,
            **_json("Error", {"error": message, "field": field})}


E400 = _error("输入有误（字段见 field）", "请填写登录凭证 code", "code")
E401 = _error("未登录或登录已过期", "登录已过期，请重新登录", "Authorization")
E404 = _error("对象不存在或不在本人权限范围内", "检测系统不存在或无权访问", "test_system_id")
BEARER = [{"bearerAuth": []}]
TS_ID = {"name": "ts_id", "in": "path", "required": True, "schema": INT,
         "description": "检测系统 ID"}


def _op(summary: str, ok: dict, *, body: tuple[str, Any] | None = None, auth: bool = True,
        params: list[dict] | None = None, errors: dict | None = None) -> dict:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **(errors or {})}}
    if auth:
        op["security"] = BEARER
        op["responses"].setdefault("401", E401)
    if body is not None:
        op["requestBody"] = {"required": True, **_json(*body)}
        op["responses"].setdefault("400", E400)
    if params:
        op["parameters"] = params
    return op


SESSION_EXAMPLE = {"token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI3In0.sig", "expires_in": 604800,
                   "user": USER_EXAMPLE}
PATHS: dict[str, Any] = {
    "/login": {"post": _op(
        "用 wx.login 的 code 登录，换取 JWT", {"200": {"description": "已登录",
                                                 **_json("Session", SESSION_EXAMPLE)}},
        body=("LoginRequest", {"code": "081aBcDe2zXyZq0Wq3Fe2Ks9aB3aBcDQ"}), auth=False,
        errors={"403": {"description": "该微信尚未绑定账号，需用邀请码绑定", **_json(
            "BindRequired", {"error": "该微信尚未绑定账号", "field": "code",
                             "bind_required": True, "openid_hint": "oAbc…wxyz"})},
            "503": _error("微信服务暂时不可用", "微信服务暂时不可用，请稍后再试", None)})},
    "/bind": {"post": _op(
        "用邀请码把本微信（小程序）绑定到账号", {"200": {"description": "已绑定并登录",
                                               **_json("Session", SESSION_EXAMPLE)}},
        body=("BindRequest", {"code": "081aBcDe2zXyZq0Wq3Fe2Ks9aB3aBcDQ",
                              "invite_code": "7KQ4M2XD"}), auth=False,
        errors={"403": _error("邀请码不是由更高级别的管理人员签发的",
                              "该邀请码无效：只能由更高级别的管理人员为本人生成，请联系管理员",
                              "invite_code"),
                "404": _error("邀请码不存在", "邀请码不存在，请核对后重新输入", "invite_code"),
                "409": _error("邀请码已使用，或账号/微信已绑定（先解除绑定）",
                              "该邀请码已被使用，请联系管理员重新生成", "invite_code"),
                "410": _error("邀请码已过期", "邀请码已过期，请联系管理员重新生成",
                              "invite_code")})},
    "/me": {"get": _op("当前用户", {"200": {"description": "当前用户",
                                        **_json("Me", {"user": USER_EXAMPLE})}})},
    "/scan": {"post": _op(
        "扫描质控标签，返回检测系统、靶值与今日批次",
        {"200": {"description": "检测系统信息", **_json("ScanAnswer")}},
        body=("ScanRequest", {"payload": "https://qc.example.cn/s/WzUsMV0.abc123"}),
        errors={"404": _error("标签无效或不在权限范围内", "二维码无效：不是本平台的质控标签",
                              "token"),
                "410": _error("标签已失效", "标签已失效，请重新打印", "token")})},
    "/runs": {"post": _op(
        "提交一批质控结果（按 client_id 幂等）",
        {"201": {"description": "已保存并判断", **_json("Verdict", VERDICT_EXAMPLE)},
         "200": {"description": "重复提交（同一 client_id），返回已保存的判断",
                 **_json("Verdict", VERDICT_EXAMPLE | {"duplicate": True})}},
        body=("RunSubmission", {"test_system_id": 5, "client_id": "mp-7d1c2f0e",
                                "values": {"1": "5.64", "2": "15.05"},
                                "run_date": "2026-11-25", "run_no": 1}),
        errors={"404": E404, "409": _error(
            "client_id 已用于另一组结果", "该记录编号已用于另一组结果，请勿重复使用",
            "client_id")})},
    "/test-systems/{ts_id}/runs": {"get": _op(
        "检测系统最近的批次与判断", {"200": {"description": "批次列表（新的在前）", **_json(
            "RunHistory", {"test_system_id": 5, "runs": [RUN_EXAMPLE]})}},
        params=[TS_ID, {"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                   "default": 30}}],
        errors={"400": _error("参数无效", "条数 limit必须在 1–100 之间", "limit"), "404": E404})},
    "/test-systems/{ts_id}/chart-data": {"get": _op(
        "Levey-Jennings 质控图数据（按水平）", {"200": {"description": "各水平的序列", **_json(
            "ChartData", {"test_system_id": 5, "analyte": "葡萄糖", "unit": "mmol/L",
                          "decimals": 2, "start": "2026-10-27", "end": "2026-11-25",
                          "levels": [{"level_id": 9, "level": "水平1", "mean": 5.0, "sd": 0.2,
                                      "labels": ["11-24", "11-25"], "run_ids": [119, 120],
                                      "values": [5.02, 5.64], "z": [0.1, 3.2],
                                      "status": ["accept", "reject"],
                                      "rules": [[], ["1-3s"]]}]})}},
        params=[TS_ID, {"name": "days", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 366,
                                   "default": 30}}],
        errors={"400": _error("参数无效", "天数 days必须是整数", "days"), "404": E404})},
    "/alerts": {"get": _op(
        "本实验室的质控消息（新的在前）", {"200": {"description": "消息列表", **_json(
            "AlertList", {"alerts": [ALERT_EXAMPLE]})}},
        params=[{"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}}],
        errors={"400": _error("参数无效", "条数 limit必须在 1–200 之间", "limit")})},
    "/alerts/{alert_id}/ack": {"post": _op(
        "标记消息已读", {"200": {"description": "已读", **_json("AckAnswer",
                                                         {"alert": ALERT_EXAMPLE})}},
        params=[{"name": "alert_id", "in": "path", "required": True, "schema": INT}],
        errors={"404": _error("消息不存在或无权访问", "未找到该对象或无权访问", None)})},
    "/subscriptions": {"post": _op(
        "记录订阅消息授权结果（每个 accept 可发送一条）",
        {"200": {"description": "已记录", **_json("SubscriptionAnswer", {
            "recorded": 1, "unused": {"MP_QC_ALERT_TEMPLATE": 3}})}},
        body=("SubscriptionRequest", {"template_ids": ["MP_QC_ALERT_TEMPLATE"],
                                      "results": {"MP_QC_ALERT_TEMPLATE": "accept"}}))},
    "/openapi.json": {"get": _op(
        "本接口文档（OpenAPI 3.1）", {"200": {"description": "OpenAPI 文档", **_json(
            "OpenApiDocument")}}, auth=False)},
}


def openapi_document() -> dict:
    """Return a fresh copy of the document (callers may not mutate the module's one)."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "qcwx 小程序接口", "version": "1.0.0",
                 "description": "室内质控小程序：登录绑定、扫码录入、历史与质控图、消息与订阅。"
                                "错误统一返回 {error: 中文说明, field: 出错字段}。"},
        "servers": [{"url": API_PREFIX}],
        "paths": PATHS,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    })
