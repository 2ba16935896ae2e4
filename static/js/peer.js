/* Peer pages: submit pickers on change, and show the filtered group's size live while the
   user ticks filters (GET /peer/lot/size), before applying them. Works without JS too. */
(function () {
  'use strict';

  function autosubmit() {
    document.querySelectorAll('select[data-autosubmit]').forEach(function (select) {
      select.addEventListener('change', function () {
        var form = select.form;
        if (select.dataset.reset) {  // a new lot invalidates the chosen level and analyte
          ['level', 'analyte'].forEach(function (name) {
            var field = form.querySelector('[name="' + name + '"]');
            if (field) { field.disabled = true; }
          });
        }
        form.submit();
      });
    });
  }

  function liveSize() {
    var form = document.getElementById('filter-form');
    var out = document.getElementById('pe-size');
    if (!form || !out || !window.fetch) { return; }
    var pending = null;
    form.addEventListener('change', function (event) {
      var label = event.target.closest('.pe-opt');
      if (label) { label.classList.toggle('is-on', event.target.checked); }
      var query = new URLSearchParams(new FormData(form)).toString();
      var ticket = pending = {};
      out.textContent = '计算中…';
      fetch(form.dataset.sizeUrl + '?' + query, {headers: {Accept: 'application/json'},
                                                credentials: 'same-origin'})
        .then(function (r) { return r.json().then(function (body) { return [r.ok, body]; }); })
        .then(function (res) {
          if (ticket !== pending) { return; }
          var ok = res[0], body = res[1];
          if (!ok) { out.textContent = body.error || '筛选条件有误'; return; }
          out.textContent = body.labs + ' 家实验室' +
            (body.results === null ? '' : ' · ' + body.results + ' 个结果') +
            (body.publishable ? '' : (body.labs ? '（不足，将采用上一级比对组）' : '（无匹配）'));
        })
        .catch(function () { if (ticket === pending) { out.textContent = '无法获取组大小'; } });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    autosubmit();
    liveSize();
  });
})();
