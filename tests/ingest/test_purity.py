"""The parsers import nothing of the web stack, the database nor the rest of qcwx.

``qcwx.ingest.formats`` (and ``qcwx.ingest``'s own ``__init__``, which only re-exports it)
may import the standard library, the parsing libraries and :mod:`qcwx.numbers`, a pure
leaf module, so that records can be parsed without an app or a database.
"""

import ast
import importlib
from pathlib import Path

import pytest

FORMATS_DIR = Path(importlib.import_module("qcwx.ingest.formats").__file__).resolve().parent
INGEST_INIT = FORMATS_DIR.parent / "__init__.py"
NUMBERS = Path(importlib.import_module("qcwx.numbers").__file__).resolve()
FORBIDDEN_ROOTS = {"flask", "sqlalchemy", "celery", "wechatpy", "redis", "pymysql"}
ALLOWED_QCWX = {"qcwx.numbers", "qcwx.ingest.formats"}
SOURCES = [*sorted(FORMATS_DIR.rglob("*.py")), INGEST_INIT, NUMBERS]


def _forbidden(module: str) -> bool:
    root = module.split(".")[0]
    if root in FORBIDDEN_ROOTS or root.startswith("flask_"):
        return True
    return root == "qcwx" and not any(module == ok or module.startswith(ok + ".")
                                      for ok in ALLOWED_QCWX)


def _bad_imports_in(source: str, max_level: int = 1) -> list[str]:
    """Return the forbidden imports of a module; relative ones may climb ``max_level`` dots."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            bad += [f"import {a.name}" for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and _forbidden(node.module or ""):
                bad.append(f"from {node.module} import ...")
            elif node.level > max_level:
                bad.append(f"from {'.' * node.level}{node.module or ''} import ... (climbs out)")
        elif isinstance(node, ast.Call) and _dynamic_import(node):
            bad.append(f"dynamic import of {node.args[0].value}")
    return bad


def _dynamic_import(call: ast.Call) -> bool:
    """Tell whether ``call`` is ``__import__("x")`` / ``import_module("x")`` of a forbidden x."""
    name = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
    if name not in {"__import__", "import_module"} or not call.args:
        return False
    arg = call.args[0]
    return isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _forbidden(arg.value)


def _bad_imports(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    if path == INGEST_INIT:  # may import only its .formats subpackage
        tree = ast.parse(source)
        relative = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
        return _bad_imports_in(source) + [m or "." for m in relative if m != "formats"]
    depth = len(path.relative_to(FORMATS_DIR).parts) if path.is_relative_to(FORMATS_DIR) else 0
    return _bad_imports_in(source, max_level=depth)


def test_formats_package_holds_the_parsers():
    names = {p.name for p in SOURCES}
    assert {"astm.py", "hl7v2.py", "tabular.py", "registry.py", "records.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name if p.parent == FORMATS_DIR
                         else str(p.relative_to(FORMATS_DIR.parents[2])))
def test_parser_module_imports_no_web_stack_nor_database_nor_other_qcwx_packages(path):
    assert _bad_imports(path) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import flask", 1),
        ("from flask_login import current_user", 1),
        ("import sqlalchemy.orm", 1),
        ("from qcwx.extensions import db", 1),
        ("from qcwx.ingest import services", 1),
        ("from qcwx.ingest.models import UploadBatch", 1),
        ("from .. import mapping", 1),
        ("from qcwx.numbers import parse_value", 0),
        ("from qcwx.ingest.formats.records import ParseError", 0),
        ("from .records import ParseError", 0),
        ("import hl7\nimport csv", 0),
        ("import importlib\nimportlib.import_module('sqlalchemy')", 1),
    ],
)
def test_purity_check_detects_forbidden_imports(source, expected):
    assert len(_bad_imports_in(source)) == expected
