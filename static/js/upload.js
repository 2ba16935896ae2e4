// Import pages: show the chosen file, stop double submits, filter preview rows, copy a new key.
(function () {
  "use strict";
  var file = document.getElementById("file");
  var nameBox = document.getElementById("file-name");
  if (file && nameBox) {
    file.addEventListener("change", function () {
      var f = file.files && file.files[0];
      nameBox.textContent = f ? f.name + "（" + Math.max(1, Math.round(f.size / 1024)) + " KB）" : "";
    });
  }
  // A lab picker that reloads its form on change (no inline handlers: the CSP forbids them).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  var labSelect = document.querySelector("select[data-reload]");
  if (labSelect) {
    labSelect.addEventListener("change", function () {
      window.location = labSelect.getAttribute("data-reload") + "?lab_id=" + encodeURIComponent(labSelect.value);
    });
  }
  // One click, one request: uploads and commits can take a while on big files.
  ["upload-form", "commit-form"].forEach(function (id) {
    var form = document.getElementById(id);
    if (!form) { return; }
    form.addEventListener("submit", function () {
      var btn = form.querySelector("button[type=submit]");
      if (btn) {
        btn.disabled = true;
        btn.textContent = id === "upload-form" ? "正在解析…" : "正在导入…";
      }
    });
  });
  var filter = document.getElementById("row-filter");
  var table = document.getElementById("rows");
  if (filter && table) {
    filter.addEventListener("click", function (ev) {
      var btn = ev.target.closest("[data-filter]");
      if (!btn) { return; }
      var want = btn.getAttribute("data-filter");
      filter.querySelectorAll("[data-filter]").forEach(function (b) { b.classList.toggle("is-active", b === btn); });
      table.querySelectorAll("tr[data-status]").forEach(function (tr) {
        tr.hidden = want !== "all" && tr.getAttribute("data-status") !== want;
      });
    });
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });
  document.querySelectorAll("[data-copy]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var el = document.querySelector(btn.getAttribute("data-copy"));
      if (!el) { return; }
      var text = el.textContent.trim();
      var done = function () { btn.textContent = "已复制"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { window.getSelection().selectAllChildren(el); });
      } else {
        window.getSelection().selectAllChildren(el);
        try { document.execCommand("copy"); done(); } catch (e) { /* selection stays for manual copy */ }
      }
    });
  });
}());
