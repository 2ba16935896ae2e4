"""Input guards every request passes before a view sees it: ids, integers and JSON bodies.

Why here and not in each view: the same three kinds of junk (an id above the database's
integer range, Unicode digits such as ``"²"`` that pass ``str.isdigit`` but not ``int``, and
JSON nested thousands of levels deep) reached the database or the JSON decoder from dozens
of endpoints and answered 500. One converter, one integer parser (:mod:`qcwx.numbers`) and
one JSON provider turn them into 404/400 everywhere at once.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import IntegerConverter, ValidationError

from qcwx.numbers import MAX_ID, ascii_int  # noqa: F401 - re-exported for views

#: Deepest nesting of a JSON body; the API's documents are at most 3 levels deep.
MAX_JSON_DEPTH = 32


class BoundedIntConverter(IntegerConverter):
    """``<int:…>`` that answers 404 above :data:`MAX_ID` instead of overflowing the driver."""

    def __init__(self, map, *args: Any, **kwargs: Any) -> None:  # noqa: A002 - werkzeug's name
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)

    def to_python(self, value: str) -> int:
        """Refuse (404) thousands of digits before ``int`` raises on them."""
        if len(value) > 18:
            raise ValidationError()
        return super().to_python(value)


class SafeJSONProvider(DefaultJSONProvider):
    """Decode request JSON, refusing nesting no view can handle as a ``ValueError`` (400).

    Flask turns a ``ValueError`` from ``loads`` into 400 (or ``None`` with ``silent=True``);
    a ``RecursionError`` on thousands of levels would otherwise be a 500.
    """

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Return the decoded document; ``ValueError`` when it nests too deeply."""
        try:
            data = json.loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        for _ in walk_json(data):
            pass
        return data


def walk_json(data: Any):
    """Yield every string (keys too) of ``data``; ``ValueError`` past :data:`MAX_JSON_DEPTH`."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError("JSON nested too deeply")
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            for key, value in item.items():
                yield key
                stack.append((value, depth + 1))
        elif isinstance(item, list):
            stack.extend((value, depth + 1) for value in item)


def has_lone_surrogate(data: Any) -> bool:
    r"""Return whether any string in ``data`` holds a lone surrogate (cannot be stored).

    JSON's ``\ud800`` escapes decode to such strings; UTF-8 (and so the database) refuses
    them. The mini-program answers 400 for the body; the ingest API refuses only the item.
    """
    for text in walk_json(data):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return True
    return False


def install(app: Flask) -> None:
    """Bound ``<int:…>`` URL ids and decode request JSON safely (before blueprints mount)."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.json = SafeJSONProvider(app)
