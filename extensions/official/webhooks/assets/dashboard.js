// The webhooks dashboard: lists endpoints and recent deliveries through the management API
// with the token typed in (kept in this tab's session storage). Served as a file, as the
// page's policy allows no inline script; data is only ever set as text, never parsed as HTML.
"use strict";
const api = "/ext/webhooks/api";
const $ = (id) => document.getElementById(id);
$("token").value = sessionStorage.getItem("solobase-token") || "";

async function call(method, path, body) {
  const res = await fetch(api + path, {
    method,
    headers: { "authorization": "Bearer " + $("token").value, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = res.status === 204 ? null : await res.json();
  if (!res.ok) throw new Error((data && data.error && data.error.message) || res.statusText);
  return data;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  return td;
}

function button(td, label, action) {
  const b = document.createElement("button");
  b.textContent = label;
  b.onclick = async () => { try { await action(); await load(); } catch (e) { $("error").textContent = e.message; } };
  td.append(b, " ");
}

let endpointUrls = {};

async function load() {
  $("error").textContent = "";
  sessionStorage.setItem("solobase-token", $("token").value);
  try {
    const [endpoints, summary] = await Promise.all([call("GET", "/endpoints"), call("GET", "/summary")]);
    const counts = Object.fromEntries(summary.map((s) => [s.endpoint_id, s]));
    const body = $("endpoints").tBodies[0];
    body.replaceChildren();
    endpointUrls = {};
    for (const e of endpoints) {
      endpointUrls[e.id] = e.url;
      const row = body.insertRow();
      cell(row, e.url);
      cell(row, e.event_types.join(", "));
      cell(row, e.enabled ? "enabled" : "disabled: " + (e.disabled_reason || ""), e.enabled ? "succeeded" : "failed");
      const c = counts[e.id] || { succeeded: 0, pending: 0, failed: 0 };
      cell(row, c.succeeded + " / " + c.pending + " / " + c.failed);
      const actions = row.insertCell();
      button(actions, "Send test event", () => call("POST", "/endpoints/" + e.id + "/test"));
      button(actions, e.enabled ? "Disable" : "Enable", () => call("PATCH", "/endpoints/" + e.id, { enabled: !e.enabled }));
    }
    const status = $("status").value;
    const deliveries = await call("GET", "/deliveries?limit=100" + (status ? "&status=" + status : ""));
    const dbody = $("deliveries").tBodies[0];
    dbody.replaceChildren();
    for (const d of deliveries) {
      const row = dbody.insertRow();
      cell(row, d.id);
      cell(row, d.event_type);
      cell(row, endpointUrls[d.endpoint_id] || d.endpoint_id);
      cell(row, d.status, d.status);
      cell(row, d.attempts);
      cell(row, d.last_error || (d.last_status == null ? "" : "HTTP " + d.last_status));
      const actions = row.insertCell();
      button(actions, "Resend", () => call("POST", "/deliveries/" + d.id + "/resend"));
    }
  } catch (e) {
    $("error").textContent = e.message;
  }
}

$("load").onclick = load;
$("status").onchange = load;
if ($("token").value) load();
