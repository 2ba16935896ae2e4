"""JSON bodies declared once, as pydantic models: the check and the OpenAPI document.

Why one module: the JSON APIs (``/api/ts/<id>/runs``, ``/api/mp/v1``, ``/api/ingest/v1``)
used to check bodies by hand and describe them by hand in their OpenAPI documents, and the
two drifted — a list where a dict was documented, a number where text was, answered 500.
Each API now declares its bodies as pydantic v2 models; :func:`parse` validates a body and
turns the first problem into the project's 400 answer (``{error, field}``, a Chinese message
naming the field, see :class:`qcwx.errors.UserError`), and :func:`components` generates the
documents' schemas from the very same models, so a check and its document cannot disagree.

Shared field types live here too: bounded text without lone surrogates, finite numbers,
integers that refuse strings (``2.0`` from a JSON client is still the integer 2, as JSON
Schema counts it), and ISO dates inside the plausible window of QC_SPEC.
"""

from __future__ import annotations

import functools
import inspect
import math
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from qcwx.errors import UserError
from qcwx.numbers import MAX_ID

REF_TEMPLATE = "#/components/schemas/{model}"
#: Dates a QC run, a measurement or a limit may carry (QC_SPEC; ``qcwx.iqc.validation``).
FIRST_DAY = date(1990, 1, 1)
LAST_DAY = date(2099, 12, 31)


# ---------------------------------------------------------------- field types
def _integral(value: Any) -> Any:
    """Let ``2.0`` through as 2 (JSON has one number type); everything else is checked after."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _plausible_day(day: date) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"日期 {day.isoformat()} 不在合理范围内（{FIRST_DAY.year}–"
                         f"{LAST_DAY.year} 年）")
    return day


def _iso_date(raw: str) -> date:
    """Read ``YYYY-MM-DD`` as Python does (``date.fromisoformat``), then check the window."""
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ValueError("格式无效，应为 YYYY-MM-DD") from None
    return _plausible_day(day)


def _iso_datetime(raw: str) -> datetime:
    """Read an ISO 8601 time (``datetime.fromisoformat``: offset optional), check the window."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"“{raw[:40]}”不是有效时间（例：2026-11-05T08:30:00+08:00）") from None
    _plausible_day(moment.date())
    return moment


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def text(max_length: int, *, min_length: int = 1) -> Any:
    """Return a trimmed string type of at most ``max_length`` characters (the column's size)."""
    return Annotated[str, Field(strict=True), StringConstraints(
        strip_whitespace=True, min_length=min_length, max_length=max_length)]


def int_range(low: int = 1, high: int = MAX_ID) -> Any:
    """Return an integer type within [low, high] that refuses strings, booleans and 1.5."""
    return Annotated[StrictInt, Field(ge=low, le=high), BeforeValidator(_integral)]


#: A database id from a request body (ids above a 32-bit INT column are refused, not sent).
Id = int_range(1, MAX_ID)
#: The run number of a lab-local date (QC_SPEC 1.1).
RunNo = int_range(1, 99)
#: A number a client sent as a JSON number: finite only (``1e400`` decodes to infinity).
FiniteNumber = StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)]
#: An ISO date ``YYYY-MM-DD`` inside the plausible window. Text only: lax pydantic would
#: read the number 20261201 as Unix seconds.
PlausibleDate = Annotated[str, StringConstraints(strict=True, strip_whitespace=True,
                                                 max_length=40),
                          AfterValidator(_iso_date),
                          WithJsonSchema({"type": "string", "format": "date"})]
#: An ISO 8601 time (offset optional: the lab's zone then) inside the plausible window.
PlausibleDateTime = Annotated[str, StringConstraints(strict=True, strip_whitespace=True,
                                                     max_length=64),
                              AfterValidator(_iso_datetime),
                              WithJsonSchema({"type": "string", "format": "date-time"})]
#: The same date, where an empty string means "not given" (the entry page's form fields).
OptionalFormDate = Annotated[PlausibleDate | None, BeforeValidator(_blank_is_none)]


class ApiModel(BaseModel):
    """Base of request bodies: unknown keys refused unless a model says otherwise.

    Each field's ``title`` is its Chinese name, both in the messages :func:`user_error`
    writes and in the document. ``type_messages`` replaces the generic "must be …" message
    of a field whose type is a union (its per-branch errors would read oddly), and
    :meth:`api_field` says which request field an error deep inside the body concerns.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    type_messages: ClassVar[dict[str, str]] = {}

    @classmethod
    def api_field(cls, loc: tuple) -> str:
        """Return the request field an error at ``loc`` concerns (the top-level key)."""
        return str(loc[0]) if loc and isinstance(loc[0], str) else "body"


class ResponseModel(BaseModel):
    """Base of documented answers: what the server sends, so extra keys are a mismatch."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- validation
def parse(model: type[ApiModel], data: Any) -> Any:
    """Return ``data`` validated as ``model``; raise the first problem as a 400 ``UserError``."""
    if not isinstance(data, dict):
        raise UserError("请求内容必须是 JSON 对象", field="body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise user_error(model, exc) from None


def parse_field(model: type[ApiModel], data: dict, name: str) -> Any:
    """Return one field of ``data`` validated as ``model`` declares it (else the 400).

    For the id a view must check access to before it looks at the rest of the body: a
    request outside the caller's scope then answers 404 whatever else it holds, as the
    permission matrix expects.
    """
    try:
        return _field_adapter(model, name).validate_python(data.get(name))
    except ValidationError as exc:
        raise user_error(model, exc, prefix=(name,)) from None


@functools.cache
def _field_adapter(model: type[ApiModel], name: str) -> TypeAdapter:
    info = model.model_fields[name]
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)])


def user_error(model: type[ApiModel], exc: ValidationError, prefix: tuple = ()) -> UserError:
    """Turn pydantic's first error into a Chinese message naming the field (400)."""
    errors = [e | {"loc": (*prefix, *e["loc"])} for e in exc.errors(include_url=False)]
    first = errors[0]["loc"][:1]
    # A union reports one error per branch; the branch whose type matched says most.
    same = [e for e in errors if e["loc"][:1] == first]
    err = next((e for e in same if e["type"] not in _TYPE_WORDS), same[0])
    loc = tuple(err["loc"])
    field = model.api_field(loc)
    if err["type"] == "extra_forbidden":
        return UserError(f"不支持的字段“{str(loc[-1])[:40]}”", field=field)
    label = _label(model, loc)
    return UserError(_message(model, err, label, str(loc[0]) if loc else ""), field=field)


def _label(model: type[BaseModel], loc: tuple) -> str:
    info = model.model_fields.get(str(loc[0])) if loc else None
    return (info.title if info is not None and info.title else str(loc[0]) if loc else "请求内容")


def _message(model: type[ApiModel], err: dict, label: str, name: str) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing" or (err.get("input", 0) is None and kind.endswith("_type")):
        return f"请填写{label}"
    if kind == "value_error":
        reason = str(ctx.get("error", ""))
        return reason if reason.startswith("日期") else f"{label}{reason}"
    if kind == "string_too_short":
        return f"请填写{label}"
    if kind == "string_too_long":
        return f"{label}过长（最多{ctx.get('max_length')}个字符）"
    if kind == "string_unicode":
        return f"{label}含有无效字符（孤立的 Unicode 代理码位）"
    if kind == "too_short":
        return model.type_messages.get(name) or f"{label}至少需要 {ctx.get('min_length')} 项"
    if kind == "too_long":
        return f"{label}最多 {ctx.get('max_length')} 项"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return _range_message(model, name, label)
    if kind == "finite_number":
        return f"{label}必须是有限的数字"
    if kind in ("literal_error", "enum"):
        return f"{label}只能是 {ctx.get('expected', '')}"
    if name in model.type_messages:
        return model.type_messages[name]
    return f"{label}{_TYPE_WORDS.get(kind, '格式无效')}"


_DATE_WORDS = "格式无效，应为 YYYY-MM-DD"
_TIME_WORDS = "不是有效时间（ISO 8601，例：2026-11-05T08:30:00+08:00）"
_TYPE_WORDS = {
    "string_type": "必须是字符串", "int_type": "必须是整数", "int_parsing": "必须是整数",
    "int_from_float": "必须是整数", "float_type": "必须是数字",
    "bool_type": "必须是 true 或 false", "dict_type": "必须是 JSON 对象",
    "list_type": "必须是数组", "date_type": _DATE_WORDS, "date_parsing": _DATE_WORDS,
    "date_from_datetime_parsing": _DATE_WORDS, "date_from_datetime_inexact": _DATE_WORDS,
    "datetime_type": _TIME_WORDS, "datetime_parsing": _TIME_WORDS,
    "datetime_from_date_parsing": _TIME_WORDS,
}


def _range_message(model: type[BaseModel], name: str, label: str) -> str:
    info = model.model_fields.get(name)
    bounds = _bounds(info, {}) if info is not None else {}
    if "ge" in bounds and "le" in bounds:
        return f"{label}必须在 {bounds['ge']}–{bounds['le']} 之间"
    return f"{label}超出允许范围"


def _bounds(node: Any, found: dict) -> dict:
    """Collect ``ge``/``le`` from a field's metadata, also inside ``X | None`` and aliases."""
    for attr in ("ge", "le"):
        if getattr(node, attr, None) is not None and not isinstance(node, type):
            found.setdefault(attr, getattr(node, attr))
    children = list(getattr(node, "metadata", None) or [])
    children += get_args(getattr(node, "annotation", node))
    for child in children:
        if child is not node:
            _bounds(child, found)
    return found


# ---------------------------------------------------------------- documents
def components(*models: type[BaseModel]) -> dict[str, Any]:
    """Return ``components.schemas`` generated from ``models`` (their ``$defs`` hoisted).

    Each model appears under its class name; the models it nests appear beside it, and every
    reference points at ``#/components/schemas/…``. Pydantic's automatic titles ("Client
    Id") are dropped; the Chinese titles the models declare stay.
    """
    out: dict[str, Any] = {}
    docs = _docstrings(BaseModel)
    for model in models:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE)
        for name, sub in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if sub.get("description") in docs:
                del sub["description"]  # docstrings are for qcwx's developers, not callers
            out[name] = _tidy(sub)
    return out


def _docstrings(cls: type) -> set[str]:
    """Return the cleaned docstrings of every model class (what pydantic copies)."""
    found = set()
    for sub in cls.__subclasses__():
        if sub.__doc__:
            found.add(inspect.cleandoc(sub.__doc__))
        found |= _docstrings(sub)
    return found


def _tidy(schema: Any) -> Any:
    """Drop the titles pydantic derives from class and field names (English noise)."""
    if isinstance(schema, list):
        return [_tidy(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str) and value.isascii():
            continue
        out[key] = ({k: _tidy(v) for k, v in value.items()} if key in (
            "properties", "$defs", "patternProperties") else _tidy(value))
    return out
