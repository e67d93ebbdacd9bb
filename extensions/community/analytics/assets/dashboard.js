// The analytics dashboard's only script: it asks the stats API for the report (HTML
// rendered by the server, charts included) with the login token that the admin dashboard
// keeps in this tab's sessionStorage, and shows it. No cookies, no token in the URL.
'use strict';
(function () {
  var TOKEN = 'solobase.admin.token';
  var status = document.getElementById('status');
  var form = document.getElementById('range');
  var params = new URLSearchParams(location.search);
  Array.from(params.keys()).forEach(function (k) {
    if (!params.get(k)) params.delete(k);
    var input = form.elements.namedItem(k);
    if (input && params.get(k)) input.value = params.get(k);
  });
  var token = sessionStorage.getItem(TOKEN);
  if (!token) {
    status.textContent = 'Not logged in.';
    document.getElementById('login').hidden = false;
    return;
  }
  fetch('/ext/analytics/api/report?' + params.toString(), {
    headers: {Authorization: 'Bearer ' + token}
  }).then(function (res) {
    if (res.ok) {
      return res.text().then(function (html) {
        document.getElementById('report').innerHTML = html;
        status.textContent = '';
      });
    }
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN);
      document.getElementById('login').hidden = false;
    }
    return res.json().then(function (body) {
      status.textContent = (body && body.error && body.error.message) || ('Error ' + res.status);
    }, function () { status.textContent = 'Error ' + res.status; });
  }, function (e) {
    status.textContent = 'Cannot reach the server: ' + e;
  });
})();
