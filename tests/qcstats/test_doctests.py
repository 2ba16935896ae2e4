"""Every docstring example of the statistics core runs, and passes, in the test suite."""

import doctest
import importlib
import io
import pkgutil
from pathlib import Path

import pytest

import qcwx.qcstats

MODULES = sorted(m.name for m in pkgutil.walk_packages(qcwx.qcstats.__path__, "qcwx.qcstats."))


def _doctests(module) -> list[doctest.DocTest]:
    return [t for t in doctest.DocTestFinder().find(module) if t.examples]


def test_every_qcstats_module_is_checked():
    assert {"qcwx.qcstats.westgard", "qcwx.qcstats.peer", "qcwx.qcstats.limits",
            "qcwx.qcstats.regression", "qcwx.qcstats.sigma", "qcwx.qcstats.specs"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_pass(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner()
    out = io.StringIO()
    for test in _doctests(module):
        runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()


@pytest.mark.parametrize("name", MODULES)
def test_no_example_hides_where_doctest_cannot_find_it(name):
    """Each ``>>>`` line of the source belongs to an example that the runner above runs."""
    module = importlib.import_module(name)
    source = Path(module.__file__).read_text(encoding="utf-8")
    prompts = sum(line.lstrip().startswith(">>>") for line in source.splitlines())
    assert sum(len(t.examples) for t in _doctests(module)) == prompts
