"""Chart builders (pyecharts, ECharts 6): one function per chart kind, all fed by plain data.

Builders return a pyecharts chart with an explicit ``chart_id``; :func:`render` turns it into
an HTML fragment (one ``div`` + one ``<script>``), :func:`options_json` into JSON for APIs.
Pages must load ``static/`` + :data:`ECHARTS_SCRIPT_PATH` then :data:`CHARTS_SCRIPT_PATH` once
(served locally, never a CDN).
No queries and no Flask here: callers query, then pass lists and dicts (the verdict names
come from :data:`qcwx.iqc.models.STATUS_LABEL`, their one place).
"""

from qcwx.charts.common import STATUS_COLOURS, STATUS_LABELS
from qcwx.charts.iqc import LJPoint, levey_jennings, youden, z_chart
from qcwx.charts.peer import bias_cv, histogram, lab_comparison, sdi_cvr
from qcwx.charts.render import (
    CHARTS_SCRIPT_PATH,
    ECHARTS_SCRIPT_PATH,
    options_dict,
    options_json,
    render,
)
from qcwx.charts.trend import CVR_BANDS, SDI_BANDS, sparkline, trend

__all__ = [
    "CHARTS_SCRIPT_PATH", "CVR_BANDS", "ECHARTS_SCRIPT_PATH", "LJPoint", "SDI_BANDS",
    "STATUS_COLOURS",
    "STATUS_LABELS", "bias_cv", "histogram", "lab_comparison", "levey_jennings",
    "options_dict", "options_json", "render", "sdi_cvr", "sparkline", "trend", "youden",
    "z_chart",
]
