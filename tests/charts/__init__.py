"""Chart builder tests: helpers to read the options back out of a rendered fragment."""

from __future__ import annotations

import json
import re

OPTIONS = re.compile(r'<script type="application/json" data-chart-for="[^"]+">(.*?)</script>',
                     re.S)


def options_from_html(html: str) -> dict:
    """Return the options of a render() fragment (its inert JSON), parsed."""
    match = OPTIONS.search(str(html))
    assert match, "no chart options in the fragment"
    return json.loads(match.group(1))


def series_named(options: dict, name: str) -> dict:
    """Return the one series called ``name``."""
    found = [s for s in options["series"] if s.get("name") == name]
    assert len(found) == 1, f"{len(found)} series named {name!r}"
    return found[0]


def markline_values(series: dict, axis: str = "yAxis") -> list[float]:
    """Return the sorted values of a series' straight markLines on ``axis``."""
    return sorted(item[axis] for item in series["markLine"]["data"]
                  if isinstance(item, dict) and axis in item)
