/* Entry page: submit without reloading and show the verdict card at once.
   Falls back to the plain form POST when fetch fails or JS is off. */
(function () {
  var form = document.getElementById('entry-form');
  if (!form || !window.fetch) return;
  var slot = document.getElementById('verdict-slot');
  var recent = document.getElementById('recent-slot');
  var btn = document.getElementById('submit-btn');

  function clearErrors() {
    form.querySelectorAll('.qc-field__error.js').forEach(function (e) { e.remove(); });
    form.querySelectorAll('.has-error').forEach(function (e) { e.classList.remove('has-error'); });
  }
  function showError(field, message) {
    var input = form.querySelector('[name="' + field + '"]');
    var box = input ? input.closest('.qc-field') : null;
    var div = document.createElement('div');
    div.className = 'qc-field__error js';
    div.textContent = message;
    if (box) { box.classList.add('has-error'); box.appendChild(div); }
    else { btn.parentNode.insertBefore(div, btn); }
  }
  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID().replace(/-/g, '');
    return Date.now().toString(16) + Math.random().toString(16).slice(2);
  }

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    clearErrors();
    var values = {};
    form.querySelectorAll('input[data-level]').forEach(function (i) { values[i.dataset.level] = i.value; });
    var payload = {
      run_date: form.run_date.value, run_no: form.run_no.value, values: values,
      client_id: form.client_id.value
    };
    btn.disabled = true; btn.textContent = '正在判断…';
    fetch(form.dataset.api, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRFToken': form.csrf_token.value },
      body: JSON.stringify(payload)
    }).then(function (r) { return r.json().then(function (b) { return [r.status, b]; }); })
      .then(function (res) {
        var status = res[0], body = res[1];
        if (status >= 400) {
          showError(body.field === 'values' || body.field === 'level' ? 'submit' : body.field, body.error || '提交失败');
          return;
        }
        slot.innerHTML = body.html;
        if (recent && body.recent_html !== undefined) recent.innerHTML = body.recent_html;
        // html { scroll-padding-top } keeps the card below the sticky header.
        slot.scrollIntoView({ behavior: 'smooth', block: 'start' });
        form.client_id.value = newClientId();   // the next run is a new submission
        form.querySelectorAll('input[data-level]').forEach(function (i) { i.value = ''; });
        form.run_no.value = parseInt(body.run_no, 10) + 1;
      })
      .catch(function () { form.submit(); })
      .finally(function () { btn.disabled = false; btn.textContent = '提交并判断'; });
  });
})();
