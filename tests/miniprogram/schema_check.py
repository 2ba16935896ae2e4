"""A small JSON Schema checker for the subset the OpenAPI document uses.

It covers ``$ref`` (local), ``type`` (one or a list), ``properties`` / ``required`` /
``additionalProperties``, ``items``, ``enum``, ``oneOf``, ``minItems``, ``minProperties``,
``minimum`` / ``maximum``, ``maxLength`` and the ``date`` / ``date-time`` formats; it refuses
keywords it does not know, so the document cannot silently use one it would skip.
"""

from __future__ import annotations

from datetime import date, datetime

KNOWN = {"$ref", "type", "properties", "required", "additionalProperties", "items", "enum",
         "oneOf", "minItems", "minProperties", "minimum", "maximum", "maxLength", "format",
         "default"}
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(kind: str, value) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[kind])


def _resolve(schema: dict, doc: dict) -> dict:
    while "$ref" in schema:
        node = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def errors(value, schema: dict, doc: dict, path: str = "$") -> list[str]:
    """Return the ways ``value`` violates ``schema`` (empty when it conforms)."""
    schema = _resolve(schema, doc)
    unknown = set(schema) - KNOWN
    if unknown:
        return [f"{path}: unsupported keywords {sorted(unknown)}"]
    if "oneOf" in schema:
        matches = [s for s in schema["oneOf"] if not errors(value, s, doc, path)]
        return [] if len(matches) == 1 else [f"{path}: matches {len(matches)} of oneOf"]
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is(k, value) for k in kinds):
            return [f"{path}: {value!r} is not {kinds}"]
    out: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        out += _string(value, schema, path)
    if _is("number", value):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: fewer than {schema['minItems']} items")
        for i, item in enumerate(value):
            out += errors(item, schema.get("items", {}), doc, f"{path}[{i}]")
    if isinstance(value, dict):
        out += _object(value, schema, doc, path)
    return out


def _string(value: str, schema: dict, path: str) -> list[str]:
    out = []
    if len(value) > schema.get("maxLength", len(value)):
        out.append(f"{path}: longer than {schema['maxLength']}")
    parse = {"date": date.fromisoformat, "date-time": datetime.fromisoformat}.get(
        schema.get("format", ""))
    if parse:
        try:
            parse(value)
        except ValueError:
            out.append(f"{path}: {value!r} is not a {schema['format']}")
    return out


def _object(value: dict, schema: dict, doc: dict, path: str) -> list[str]:
    out = [f"{path}: missing {key!r}" for key in schema.get("required", []) if key not in value]
    if len(value) < schema.get("minProperties", 0):
        out.append(f"{path}: fewer than {schema['minProperties']} properties")
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in props:
            out += errors(item, props[key], doc, f"{path}.{key}")
        elif extra is False:
            out.append(f"{path}: unexpected property {key!r}")
        elif isinstance(extra, dict):
            out += errors(item, extra, doc, f"{path}.{key}")
    return out
