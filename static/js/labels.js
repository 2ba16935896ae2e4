// Label sheet: the print button and the "regenerate?" confirmation (listeners, not inline
// handlers: the CSP forbids those).
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  var button = document.getElementById("print-btn");
  if (button) {
    button.addEventListener("click", function () { window.print(); });
  }
})();
