/* ECharts for server-side rendering (qcwx/charts/ssr.py): the same series types, components
   and features as the pages' bundle (echarts-qcwx.js), plus the SVG renderer that
   renderToSVGString() needs. `make assets` bundles it into static/vendor/echarts-qcwx-ssr.js,
   which the app loads once per process into an embedded V8 (mini-racer); browsers never
   download it. */
import { use } from 'echarts/core';
import { SVGRenderer } from 'echarts/renderers';

use([SVGRenderer]);

export * from './echarts-qcwx.js';
