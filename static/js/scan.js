/* qcwxScan(): the one way every page scans a QC label.
   Inside WeChat it uses WeChat's own scanner (JS-SDK scanQRCode, configured from
   GET /wechat/jssdk/config); anywhere else, or when the SDK or its config is unavailable, it
   takes a photo and lets the server decode it (POST /labels/decode). Only our own label URLs
   (same origin, /s/<token>) are followed, so a foreign QR code cannot send users elsewhere.
   Buttons with id="scan-btn" or [data-qcwx-scan] are revealed and wired up on load. */
(function () {
  'use strict';
  var SDK_URL = '/static/vendor/jweixin.js';
  var CONFIG_URL = '/wechat/jssdk/config';
  var DECODE_URL = '/labels/decode';
  var LABEL_PATH = /^\/s\/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\/?$/;
  var WX_TIMEOUT_MS = 6000;
  var MAX_SIDE = 2000;           // photos are shrunk to this before upload (faster on 4G)
  var SHRINK_ABOVE = 1536 * 1024;

  var wxPromise = null;          // resolves with wx once wx.config succeeded
  var wxState = 'idle';          // idle | pending | ready | failed
  var picker = null;
  var tipTimer = null;

  function inWeChat() { return /MicroMessenger/i.test(navigator.userAgent); }

  function tip(message, kind) {
    var el = document.getElementById('qcwx-scan-msg');
    if (!el) {
      el = document.createElement('div');
      el.id = 'qcwx-scan-msg';
      el.setAttribute('role', 'alert');
      document.body.appendChild(el);
    }
    el.className = 'weui-toptips' + (kind === 'busy' ? '' : ' weui-toptips_warn');
    if (kind === 'busy') el.style.background = '#07c160';
    else el.style.background = '';
    el.textContent = message;
    el.style.display = 'block';
    el.dataset.kind = kind || 'error';
    clearTimeout(tipTimer);
    if (kind !== 'busy') tipTimer = setTimeout(function () { el.style.display = 'none'; }, 4000);
  }
  function hideTip() {
    var el = document.getElementById('qcwx-scan-msg');
    if (el && el.dataset.kind === 'busy') el.style.display = 'none';
  }

  /* Return the absolute URL when text is one of our label URLs, else null. */
  function ourLabelUrl(text) {
    var url;
    try { url = new URL(String(text || '').trim()); } catch (e) { return null; }
    return url.origin === location.origin && LABEL_PATH.test(url.pathname) ? url.href : null;
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) return meta.content;
    var input = document.querySelector('input[name="csrf_token"]');
    return input ? input.value : '';
  }

  // ------------------------------------------------------------ WeChat scanner
  function loadSdk() {
    if (window.wx) return Promise.resolve(window.wx);
    return new Promise(function (resolve, reject) {
      var s = document.createElement('script');
      s.src = SDK_URL;
      s.onload = function () {
        var wx = window.wx || window.jWeixin;
        if (wx) resolve(wx); else reject(new Error('JS-SDK did not define wx'));
      };
      s.onerror = function () { reject(new Error('JS-SDK failed to load')); };
      document.head.appendChild(s);
    });
  }

  function fetchConfig() {
    var url = CONFIG_URL + '?url=' + encodeURIComponent(location.href.split('#')[0]);
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) {
        if (!r.ok) throw new Error('JS-SDK config answered ' + r.status);
        return r.json();
      })
      .then(function (cfg) {
        if (!cfg || !cfg.appId || !cfg.signature || !cfg.nonceStr || !cfg.timestamp) {
          throw new Error('JS-SDK config incomplete');
        }
        return cfg;
      });
  }

  function configure(wx, cfg) {
    var apis = (cfg.jsApiList || []).slice();
    if (apis.indexOf('scanQRCode') < 0) apis.push('scanQRCode');
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () { reject(new Error('wx.config timed out')); }, WX_TIMEOUT_MS);
      wx.ready(function () { clearTimeout(timer); resolve(wx); });
      wx.error(function (err) { clearTimeout(timer); reject(err); });
      wx.config({ debug: false, appId: cfg.appId, timestamp: cfg.timestamp,
                  nonceStr: cfg.nonceStr, signature: cfg.signature, jsApiList: apis });
    });
  }

  /* Configure the JS-SDK once per page; started on load inside WeChat so a tap scans at once. */
  function prepareWx() {
    if (wxPromise) return wxPromise;
    wxState = 'pending';
    wxPromise = Promise.all([loadSdk(), fetchConfig()])
      .then(function (both) { return configure(both[0], both[1]); });
    wxPromise.then(function () { wxState = 'ready'; },
                   function (err) {
                     wxState = 'failed';
                     if (window.console) console.warn('qcwxScan: WeChat scanner unavailable,', err);
                   });
    return wxPromise;
  }

  function scanWithWx(wx) {
    wx.scanQRCode({
      needResult: 1,
      scanType: ['qrCode'],
      success: function (res) { follow(res && res.resultStr); },
      fail: function () { tip('扫码失败，请重试，或在浏览器中打开后拍照识别'); }
    });
  }

  function follow(text) {
    var url = ourLabelUrl(text);
    if (url) { location.assign(url); return; }
    tip('不是本平台的质控标签');
  }

  // ------------------------------------------------------------ photo + server decode
  function shrink(file) {
    if (file.size <= SHRINK_ABOVE || !window.URL || !HTMLCanvasElement.prototype.toBlob) {
      return Promise.resolve(file);
    }
    return new Promise(function (resolve) {
      var img = new Image();
      var src = URL.createObjectURL(file);
      img.onload = function () {
        URL.revokeObjectURL(src);
        var scale = MAX_SIDE / Math.max(img.naturalWidth, img.naturalHeight);
        if (!(scale < 1)) { resolve(file); return; }
        var canvas = document.createElement('canvas');
        canvas.width = Math.round(img.naturalWidth * scale);
        canvas.height = Math.round(img.naturalHeight * scale);
        canvas.getContext('2d').drawImage(img, 0, 0, canvas.width, canvas.height);
        canvas.toBlob(function (blob) { resolve(blob || file); }, 'image/jpeg', 0.9);
      };
      img.onerror = function () { URL.revokeObjectURL(src); resolve(file); };
      img.src = src;
    });
  }

  function upload(file) {
    tip('正在识别二维码…', 'busy');
    shrink(file).then(function (blob) {
      var body = new FormData();
      body.append('image', blob, 'label.jpg');
      return fetch(DECODE_URL, {
        method: 'POST', body: body, credentials: 'same-origin',
        headers: { Accept: 'application/json', 'X-CSRFToken': csrfToken() }
      });
    }).then(function (r) {
      return r.json().catch(function () { return { error: '识别失败，请刷新页面后重试' }; });
    }).then(function (res) {
      if (res && res.url) { hideTip(); location.assign(res.url); return; }
      tip((res && res.error) || '识别失败，请重试');
    }).catch(function () {
      tip('网络异常，请检查网络后重试');
    });
  }

  function pickPhoto() {
    if (!picker) {
      picker = document.createElement('input');
      picker.type = 'file';
      picker.accept = 'image/*';
      picker.setAttribute('capture', 'environment');
      picker.id = 'qcwx-scan-file';
      picker.hidden = true;
      picker.addEventListener('change', function () {
        if (picker.files && picker.files[0]) upload(picker.files[0]);
        picker.value = '';
      });
      document.body.appendChild(picker);
    }
    // Browsers open a file chooser only during a user gesture; after a slow async wait the
    // gesture may have expired, so ask for one more tap instead of failing silently.
    if (navigator.userActivation && !navigator.userActivation.isActive) {
      tip(inWeChat() ? '微信扫一扫暂不可用，请再点一次，改用拍照识别' : '请点击“扫一扫”按钮拍照识别');
      return;
    }
    picker.click();
  }

  // ------------------------------------------------------------ the one entry point
  function qcwxScan() {
    if (!inWeChat() || wxState === 'failed') { pickPhoto(); return; }
    prepareWx().then(scanWithWx, pickPhoto);
  }
  window.qcwxScan = qcwxScan;

  function wire() {
    var buttons = document.querySelectorAll('#scan-btn, [data-qcwx-scan]');
    Array.prototype.forEach.call(buttons, function (btn) {
      btn.hidden = false;
      btn.addEventListener('click', function (ev) { ev.preventDefault(); qcwxScan(); });
    });
    if (buttons.length && inWeChat()) prepareWx().catch(function () { /* photo fallback */ });
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', wire);
  else wire();
})();
