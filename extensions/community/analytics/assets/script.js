// Solobase analytics: page views (including history-API navigations) and custom events,
// without cookies. Embed with <script defer src="https://<instance>/ext/analytics/script.js">.
// Custom events: solobase.track('signup', {plan: 'pro'}).
(function () {
  'use strict';
  var me = document.currentScript;
  var endpoint = (me && me.getAttribute('data-endpoint')) ||
    (me && me.src ? new URL(me.src).origin : location.origin) + '/ext/analytics/api/track';

  // Only utm_* and ref leave the page; the server drops the rest again anyway.
  function clean(href) {
    var url = new URL(href);
    var kept = new URLSearchParams();
    url.searchParams.forEach(function (v, k) {
      if (k === 'ref' || k.indexOf('utm_') === 0) kept.append(k, v);
    });
    var q = kept.toString();
    return url.origin + url.pathname + (q ? '?' + q : '');
  }

  function send(name, props) {
    var body = JSON.stringify({
      name: name,
      url: clean(location.href),
      referrer: document.referrer || null,
      props: props || null
    });
    if (navigator.sendBeacon && navigator.sendBeacon(endpoint, body)) return;
    fetch(endpoint, {method: 'POST', body: body, keepalive: true, credentials: 'omit',
      headers: {'Content-Type': 'text/plain'}}).catch(function () {});
  }

  var last = null;
  function page() {
    if (location.href === last) return;
    last = location.href;
    send('pageview');
  }

  var push = history.pushState;
  history.pushState = function () {
    push.apply(this, arguments);
    page();
  };
  window.addEventListener('popstate', page);
  window.solobase = window.solobase || {};
  window.solobase.track = function (name, props) { send(String(name), props); };
  page();
})();
