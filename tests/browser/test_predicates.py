"""Browser tests wait on function predicates, never on string expressions.

Playwright polls a string predicate with ``eval`` inside the page, which this site's CSP
(``script-src 'self'``, no ``'unsafe-eval'``) refuses: the wait then fails with an EvalError
only when the condition is not already true at the first check, that is on a slow machine
(the CI failure of ``test_scan_inside_wechat_uses_the_js_sdk_scanner``). A function
predicate is compiled by the DevTools protocol, outside the page's CSP.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _string_predicates() -> list[str]:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "wait_for_function" and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                    and "=>" not in node.args[0].value
                    and not node.args[0].value.lstrip().startswith(("function", "async"))):
                found.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    return found


def test_every_wait_for_function_predicate_is_a_function():
    assert _string_predicates() == []
