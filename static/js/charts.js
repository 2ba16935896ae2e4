/* Draw every chart a page holds: each <div class="qc-chart"> has its ECharts options in the
   JSON <script type="application/json" data-chart-for="<id>"> that follows it (rendered by
   qcwx.charts.render). No inline script, so the pages can run under a strict CSP; call
   qcwxCharts.draw(root) after inserting chart HTML into a page.
   On screen the first chart is drawn at once and the others on the following animation
   frames (at least one a frame, more while the frame has 8 ms left), those near the viewport
   (IntersectionObserver) first and those far from it without the grow-in animation nobody
   sees: a report of 40 charts shows its first one as soon as a report of one would, and the
   page stays responsive while the rest are drawn.
   A chart's box may already hold the chart drawn on the server (<svg class="qc-chart__ssr">,
   qcwx/charts/ssr.py), painted with the HTML before ECharts arrived: it is replaced by the
   interactive chart, without the grow-in animation, in the same frame.
   When printing (print media, or <html data-print>: the PDF export) charts are drawn all at
   once, without animation (the first frame is the final one) and without zoom sliders;
   window.qcwxChartsDone is true only once every chart given is drawn (the PDF printer waits). */
(function () {
  var queue = [];  // the <script data-chart-for> still to draw, in page order
  var scheduled = false;
  var printRequested = false;  // beforeprint of a page drawn on screen
  var near = {};  // per chart id: within a screen of the viewport (once the observer says)
  var observer = window.IntersectionObserver ? new IntersectionObserver(function (entries) {
    entries.forEach(function (entry) { near[entry.target.id] = entry.isIntersecting; });
  }, {rootMargin: '100% 0px'}) : null;

  function printing() {
    return printRequested || document.documentElement.hasAttribute('data-print') ||
      (window.matchMedia && window.matchMedia('print').matches);
  }
  function drawOne(script) {
    var el = document.getElementById(script.getAttribute('data-chart-for'));
    if (!el || !window.echarts) { return; }
    if (observer) { observer.unobserve(el); }
    var chart = echarts.getInstanceByDom(el);
    var drawnBefore = el.querySelector('svg.qc-chart__ssr');
    if (drawnBefore) { el.removeChild(drawnBefore); }  // same frame: the canvas takes its place
    if (!chart) {
      chart = echarts.init(el, null, {renderer: 'canvas'});
      window.addEventListener('resize', function () { chart.resize(); });
    }
    var options = JSON.parse(script.textContent);
    // far off screen nobody sees the grow-in; over the server's SVG it would replay a chart
    // already shown whole
    if (near[el.id] === false || drawnBefore) { options.animation = false; }
    if (printing()) {
      options.animation = false;
      [].concat(options.dataZoom || []).forEach(function (zoom) {
        if (zoom.type === 'slider') { zoom.show = false; }  // no slider on paper; same window
      });
    }
    chart.setOption(options);
  }
  function next() {  // the first queued chart near the viewport, else the first one queued
    for (var i = 0; i < queue.length; i++) {
      if (near[queue[i].getAttribute('data-chart-for')]) { return queue.splice(i, 1)[0]; }
    }
    return queue.shift();
  }
  function step(budget) {  // charts for budget ms (at least one), then the next frame
    var start = Date.now();
    scheduled = false;
    do {
      if (queue.length) { drawOne(next()); }
    } while (queue.length && Date.now() - start < budget);
    if (queue.length) {
      scheduled = true;
      window.requestAnimationFrame(function () { step(8); });
    } else {
      window.qcwxChartsDone = true;
    }
  }
  function flush() {
    while (queue.length) { drawOne(queue.shift()); }
    window.qcwxChartsDone = true;
  }
  function draw(root) {
    (root || document).querySelectorAll('script[data-chart-for]').forEach(function (script) {
      if (queue.indexOf(script) >= 0) { return; }
      queue.push(script);
      var el = document.getElementById(script.getAttribute('data-chart-for'));
      if (observer && el) {
        delete near[el.id];  // until the observer's first report: drawn as if near
        observer.observe(el);
      }
    });
    window.qcwxChartsDone = false;
    if (printing() || !window.requestAnimationFrame) {
      flush();
    } else if (!scheduled) {
      step(0);  // the first chart now, the next ones on the following frames
    }
  }
  window.qcwxCharts = {draw: draw};
  window.addEventListener('beforeprint', function () { printRequested = true; flush(); });
  window.addEventListener('afterprint', function () { printRequested = false; });
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', function () { draw(); });
  } else {
    draw();
  }
})();
