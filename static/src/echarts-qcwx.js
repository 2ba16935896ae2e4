/* ECharts as this site uses it: exactly the series types, components and features that the
   builders in qcwx/charts/ put in their options (pure JSON, drawn by static/js/charts.js),
   tree-shaken from echarts/core. `make assets` bundles this file with esbuild into
   static/vendor/echarts-qcwx.min.js, which defines the same global `echarts` as the full
   dist build (init, getInstanceByDom, use, …).

   A builder that starts using another series type, component or option feature adds it here:
   tests/browser/test_echarts_bundle.py draws every builder's chart with a development build
   of this file and fails on ECharts' "… is used but not imported" message. */
import { use } from 'echarts/core';
import { BarChart, LineChart, ScatterChart } from 'echarts/charts';
import {
  AriaComponent,            // pyecharts writes aria: {enabled: false} into every option
  DataZoomInsideComponent,  // LJ and Z charts: drag / pinch inside the plot
  DataZoomSliderComponent,  // LJ and Z charts: the slider under the plot
  GridComponent,            // cartesian axes (and the axis pointer the tooltip component uses)
  LegendComponent,          // 'plain', and 'scroll' above four entries (common.legend)
  MarkAreaComponent,        // SD bands of the lab-means chart
  MarkLineComponent,        // SD, limit and reference lines
  TitleComponent,
  TooltipComponent,
} from 'echarts/components';
import { LabelLayout, LegacyGridContainLabel } from 'echarts/features';
import { CanvasRenderer } from 'echarts/renderers';

use([
  BarChart, LineChart, ScatterChart,
  AriaComponent, DataZoomInsideComponent, DataZoomSliderComponent, GridComponent,
  LegendComponent, MarkAreaComponent, MarkLineComponent, TitleComponent, TooltipComponent,
  LabelLayout,             // series labelLayout: the LJ rule labels (moveOverlap, hideOverlap)
  LegacyGridContainLabel,  // grid.containLabel, which every builder sets
  CanvasRenderer,
]);

export * from 'echarts/core';
