/* Draw every chart a page holds: each <div class="qc-chart"> has its ECharts options in the
   JSON <script type="application/json" data-chart-for="<id>"> that follows it (rendered by
   qcwx.charts.render). No inline script, so the pages can run under a strict CSP; call
   qcwxCharts.draw(root) after inserting chart HTML into a page. */
(function () {
  function drawOne(script) {
    var el = document.getElementById(script.getAttribute('data-chart-for'));
    if (!el || !window.echarts) { return; }
    var chart = echarts.getInstanceByDom(el) || echarts.init(el, null, {renderer: 'canvas'});
    chart.setOption(JSON.parse(script.textContent));
    window.addEventListener('resize', function () { chart.resize(); });
  }
  function draw(root) {
    (root || document).querySelectorAll('script[data-chart-for]').forEach(drawOne);
  }
  window.qcwxCharts = {draw: draw};
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', function () { draw(); });
  } else {
    draw();
  }
})();
