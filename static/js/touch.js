// iOS WebKit (WeChat's in-app browser on iPhone) shows :active feedback on buttons only when
// the page listens for touchstart; a listener here replaces <body ontouchstart>, an inline
// handler the Content-Security-Policy refuses.
document.addEventListener("touchstart", function () {}, { passive: true });
