"""Chart builder tests: helpers to read the options back out of a rendered fragment."""

from __future__ import annotations

import json
import re

SET_OPTION = re.compile(r"chart\.setOption\((.*)\);\n\s*window\.addEventListener", re.S)


def unescape_script(js: str) -> str:
    """Undo qcwx.charts.render.escape_for_script."""
    return js.replace("<\\/", "</").replace("<\\!--", "<!--")


def options_from_html(html: str) -> dict:
    """Return the options a render() fragment passes to setOption, parsed as JSON."""
    match = SET_OPTION.search(str(html))
    assert match, "no setOption(...) in the fragment"
    return json.loads(unescape_script(match.group(1)))


def series_named(options: dict, name: str) -> dict:
    """Return the one series called ``name``."""
    found = [s for s in options["series"] if s.get("name") == name]
    assert len(found) == 1, f"{len(found)} series named {name!r}"
    return found[0]


def markline_values(series: dict, axis: str = "yAxis") -> list[float]:
    """Return the sorted values of a series' straight markLines on ``axis``."""
    return sorted(item[axis] for item in series["markLine"]["data"]
                  if isinstance(item, dict) and axis in item)
