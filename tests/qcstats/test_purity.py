"""The statistics core imports nothing of the web stack nor of the rest of qcwx."""

import ast
from pathlib import Path

import pytest

import qcwx.qcstats

PACKAGE_DIR = Path(qcwx.qcstats.__file__).resolve().parent
FORBIDDEN_ROOTS = {"flask", "sqlalchemy", "celery", "wechatpy", "redis", "pymysql"}
SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))


def _forbidden(module: str) -> bool:
    root = module.split(".")[0]
    if root in FORBIDDEN_ROOTS or root.startswith("flask_"):
        return True
    return root == "qcwx" and not (module == "qcwx.qcstats" or module.startswith("qcwx.qcstats."))


def _bad_imports_in(source: str, depth: int = 0) -> list[str]:
    """Return the forbidden imports of a module ``depth`` subpackages below qcstats."""
    tree = ast.parse(source)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [f"import {a.name}" for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and _forbidden(node.module or ""):
                bad.append(f"from {node.module} import ...")
            elif node.level > depth + 1:
                dots = "." * node.level
                bad.append(f"from {dots}{node.module or ''} import ... (leaves qcstats)")
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
    depth = len(path.relative_to(PACKAGE_DIR).parts) - 1
    return _bad_imports_in(path.read_text(encoding="utf-8"), depth)


def test_package_has_sources():
    assert any(p.name == "westgard.py" for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_qcstats_module_imports_no_web_stack_nor_other_qcwx_packages(path):
    assert _bad_imports(path) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import flask", 1),
        ("from flask_login import current_user", 1),
        ("import sqlalchemy.orm", 1),
        ("from celery import shared_task", 1),
        ("import wechatpy", 1),
        ("import redis, pymysql", 2),
        ("from qcwx.iqc import services", 1),
        ("import qcwx.extensions", 1),
        ("from .. import models", 1),
        ("from qcwx.qcstats import westgard", 0),
        ("from .westgard import RULE_CODES", 0),
        ("import numpy as np\nimport pandas", 0),
        ("import importlib\nimportlib.import_module('flask')", 1),
        ("__import__('celery')", 1),
    ],
)
def test_purity_check_detects_forbidden_imports(source, expected):
    assert len(_bad_imports_in(source)) == expected


def test_purity_check_allows_parent_import_only_inside_a_subpackage():
    assert _bad_imports_in("from .. import westgard", depth=1) == []
    assert len(_bad_imports_in("from ... import models", depth=1)) == 1
