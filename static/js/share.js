/* The WeChat share card of a shared report page (/r/<token>).
   Inside WeChat: load the JS-SDK, get wx.config signed for this page's real URL
   (location.href without its #fragment) from /wechat/jssdk/config -- which signs share-link
   pages for anonymous viewers too -- and set the card of "send to chat" and "moments" from
   <meta id="share-card" data-title data-desc data-img>. Elsewhere: nothing (a normal page).
   The outcome is left on <html data-share-card="configured|failed|off"> for tests. */
(function () {
  'use strict';
  var SDK_URL = '/static/vendor/jweixin.js';
  var CONFIG_URL = '/wechat/jssdk/config';
  var root = document.documentElement;

  function done(state) { root.setAttribute('data-share-card', state); }

  function loadSdk(callback) {
    if (window.wx) { callback(); return; }
    var s = document.createElement('script');
    s.src = SDK_URL;
    s.onload = callback;
    s.onerror = function () { done('failed'); };
    document.head.appendChild(s);
  }

  function card() {
    var meta = document.getElementById('share-card');
    var pageUrl = location.href.split('#')[0];
    return {
      title: meta.getAttribute('data-title'),
      desc: meta.getAttribute('data-desc'),
      link: pageUrl,
      imgUrl: meta.getAttribute('data-img')
    };
  }

  function configure() {
    var url = location.href.split('#')[0];
    fetch(CONFIG_URL + '?url=' + encodeURIComponent(url), {credentials: 'same-origin'})
      .then(function (r) { if (!r.ok) { throw new Error('config ' + r.status); } return r.json(); })
      .then(function (cfg) {
        window.wx.config({
          debug: false, appId: cfg.appId, timestamp: cfg.timestamp, nonceStr: cfg.nonceStr,
          signature: cfg.signature,
          jsApiList: ['updateAppMessageShareData', 'updateTimelineShareData']
        });
        window.wx.ready(function () {
          var c = card();
          window.wx.updateAppMessageShareData(c);
          window.wx.updateTimelineShareData({title: c.title, link: c.link, imgUrl: c.imgUrl});
          done('configured');
        });
        window.wx.error(function () { done('failed'); });
      })
      .catch(function () { done('failed'); });
  }

  if (!document.getElementById('share-card') || !/MicroMessenger/i.test(navigator.userAgent)) {
    done('off');
    return;
  }
  loadSdk(configure);
})();
