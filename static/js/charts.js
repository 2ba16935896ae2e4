/* Draw every chart a page holds: each <div class="qc-chart"> has its ECharts options in the
   JSON <script type="application/json" data-chart-for="<id>"> that follows it (rendered by
   qcwx.charts.render). No inline script, so the pages can run under a strict CSP; call
   qcwxCharts.draw(root) after inserting chart HTML into a page.
   When printing (print media, or <html data-print>: the PDF export) charts are drawn without
   animation (the first frame is the final one) and without zoom sliders;
   window.qcwxChartsDone is set once the page's charts are drawn (the PDF printer waits). */
(function () {
  function printing() {
    return document.documentElement.hasAttribute('data-print') ||
      (window.matchMedia && window.matchMedia('print').matches);
  }
  function drawOne(script) {
    var el = document.getElementById(script.getAttribute('data-chart-for'));
    if (!el || !window.echarts) { return; }
    var chart = echarts.getInstanceByDom(el) || echarts.init(el, null, {renderer: 'canvas'});
    var options = JSON.parse(script.textContent);
    if (printing()) {
      options.animation = false;
      [].concat(options.dataZoom || []).forEach(function (zoom) {
        if (zoom.type === 'slider') { zoom.show = false; }  // no slider on paper; same window
      });
    }
    chart.setOption(options);
    window.addEventListener('resize', function () { chart.resize(); });
  }
  function draw(root) {
    (root || document).querySelectorAll('script[data-chart-for]').forEach(drawOne);
    window.qcwxChartsDone = true;
  }
  window.qcwxCharts = {draw: draw};
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', function () { draw(); });
  } else {
    draw();
  }
})();
