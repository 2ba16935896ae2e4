// 开放数据: poll the progress of running exports and reveal the download link when ready.
(function () {
  "use strict";
  function poll(item) {
    fetch(item.dataset.statusUrl, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { return; }
        item.dataset.status = s.status;
        item.querySelector("[data-field=status]").textContent = s.status_label;
        item.querySelector(".qc-progress__bar").style.width = s.percent + "%";
        item.querySelector(".qc-progress").setAttribute("aria-valuenow", s.percent);
        item.querySelector("[data-field=percent]").textContent =
          s.percent + "%（" + s.n_done + "/" + s.n_total + " 条）";
        if (s.download_url) { item.querySelector("[data-field=download]").hidden = false; }
        if (s.status === "queued" || s.status === "running") {
          setTimeout(function () { poll(item); }, 2000);
        }
      })
      .catch(function () { setTimeout(function () { poll(item); }, 5000); });
  }
  document.querySelectorAll("[data-export]").forEach(function (item) {
    if (item.dataset.status === "queued" || item.dataset.status === "running") { poll(item); }
  });
})();
