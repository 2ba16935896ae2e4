"""Regression: ECharts thinned LJ symbols on long series, hiding a 1-3s point (demo, UA)."""

from qcwx import charts


def test_every_result_keeps_its_symbol_on_long_series():
    points = [{"label": f"d{i}", "value": 5.0, "z": 0.0, "status": "accept", "rules": [],
               "handled": None, "detail": {}} for i in range(200)]
    lj = charts.options_dict(charts.levey_jennings(points, mean=5, sd=0.2, title="t",
                                                   chart_id="lj"))
    assert lj["series"][0]["showAllSymbol"] is True
    z = charts.options_dict(charts.z_chart({"水平1": [(f"d{i}", 0.1, "accept")
                                                     for i in range(200)]}, chart_id="z"))
    assert all(s.get("showAllSymbol") for s in z["series"] if s.get("type") == "line"
               and s.get("data") and s.get("name") == "水平1")
