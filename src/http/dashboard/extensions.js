// The extensions list (with request rates measured between refreshes) and one extension's
// page: state, enable with the permissions it will be granted, disable, revoke, health history,
// counters and limits.
import { api } from './api.js';
import { badge, extensionHref, fail, h, say, show, when, yesNo } from './dom.js';

/** How often the extensions list refreshes; request rates are measured over this interval. */
const POLL_MS = 5000;

export function viewExtensions(view) {
  document.title = 'Extensions · Solobase admin';
  const body = h('tbody', { id: 'extensions-body' });
  const updated = h('p', { class: 'muted', id: 'extensions-updated' }, 'Loading…');
  const problem = h('div', { id: 'extensions-error' });
  show(
    h('h1', {}, 'Extensions'),
    h('table', { id: 'extensions' },
      h('caption', {},
        `Requests/s: requests to the extension's routes (/ext/<name>/…) between the last two refreshes, `,
        `divided by the seconds between them; the page refreshes every ${POLL_MS / 1000} s, so the first `,
        'figure appears at the second refresh. Errors: its routes\' error answers and panics since the server started.'),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Version'),
        h('th', { scope: 'col' }, 'Enabled'), h('th', { scope: 'col' }, 'Health'),
        h('th', { scope: 'col', class: 'num' }, 'Requests/s'), h('th', { scope: 'col', class: 'num' }, 'Errors'))),
      body),
    updated, problem);

  /** The previous refresh: when, and each extension's request count then. */
  let previous = null;
  async function refresh() {
    let list;
    try {
      ({ data: list } = await api('GET', '/api/v1/extensions'));
    } catch (e) {
      if (view.current()) fail(problem, e);
      return;
    }
    if (!view.current()) return;
    problem.replaceChildren();
    const now = performance.now();
    body.replaceChildren(...list.map((ext) => extensionRow(ext, previous, now)));
    previous = {
      at: now,
      requests: new Map(list.filter((e) => e.compiled).map((e) => [e.name, e.stats.requests])),
    };
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
  }
  refresh();
  view.every(refresh, POLL_MS);
}

function extensionRow(ext, previous, now) {
  const name = h('td', {}, h('a', { href: extensionHref(ext.name) }, ext.name));
  if (!ext.compiled) {
    return h('tr', { 'data-name': ext.name },
      name, h('td', {}, ext.version || '—'),
      h('td', { colspan: 4, class: 'muted' }, `Not in this binary: ${ext.hint}`));
  }
  const health = ext.health.now;
  let rate = '…';
  if (previous && previous.requests.has(ext.name)) {
    const seconds = (now - previous.at) / 1000;
    const delta = ext.stats.requests - previous.requests.get(ext.name);
    rate = seconds > 0 ? (delta / seconds).toFixed(2) : '…';
  }
  return h('tr', { 'data-name': ext.name },
    name,
    h('td', {}, ext.version || '—'),
    h('td', { class: 'enabled' }, yesNo(ext.enabled), ext.error ? h('div', { class: 'muted' }, ext.error) : null),
    h('td', { class: 'health' }, badge(health.status), ' ', h('span', { class: 'muted' }, health.message || '')),
    h('td', { class: 'num rate' }, rate),
    h('td', { class: 'num errors' }, String(ext.stats.errors)));
}

export async function viewExtension(view, name) {
  document.title = `${name} · Solobase admin`;
  const feedback = h('div', { id: 'extension-feedback', role: 'status' });
  show(h('p', {}, h('a', { href: '#/extensions' }, '← All extensions')), h('h1', {}, name), feedback,
    h('p', {}, 'Loading…'));
  let ext, health, metrics;
  try {
    [{ data: ext }, { data: health }, { data: metrics }] = await Promise.all([
      api('GET', `/api/v1/extensions/${encodeURIComponent(name)}`),
      api('GET', `/api/v1/extensions/${encodeURIComponent(name)}/health`),
      api('GET', `/api/v1/extensions/${encodeURIComponent(name)}/metrics`),
    ]);
  } catch (e) {
    if (view.current()) {
      show(h('p', {}, h('a', { href: '#/extensions' }, '← All extensions')), h('h1', {}, name), feedback);
      fail(feedback, e);
    }
    return;
  }
  if (!view.current()) return;
  const again = () => view.reload();
  const confirmArea = h('div', { id: 'confirm-area' });
  const actions = h('div', { class: 'actions' },
    ext.enabled
      ? h('button', { id: 'disable', type: 'button', class: 'danger', onclick: () => disable(name, feedback, again) }, 'Disable')
      : h('button', { id: 'enable', type: 'button', onclick: () => confirmEnable(ext, confirmArea, feedback, again) }, 'Enable…'),
    // Running without some requested permissions: granting them is an enable that grants.
    ext.enabled && ext.permissions.pending.length
      ? h('button', { id: 'grant', type: 'button', class: 'secondary', onclick: () => confirmEnable(ext, confirmArea, feedback, again) }, 'Grant pending permissions…')
      : null,
    h('a', { href: extensionHref(name, '/config') }, 'Edit configuration'),
    h('a', { href: `#/audit?extension=${encodeURIComponent(name)}` }, 'Audit log'));
  show(
    h('p', {}, h('a', { href: '#/extensions' }, '← All extensions')),
    h('h1', {}, `${ext.name} `, h('span', { class: 'muted' }, ext.version || '')),
    ext.description ? h('p', {}, ext.description) : null,
    feedback,
    h('dl', { class: 'facts', id: 'extension-state' },
      h('dt', {}, 'Enabled'), h('dd', { id: 'state-enabled' }, yesNo(ext.enabled)),
      h('dt', {}, 'Running'), h('dd', {}, yesNo(ext.running)),
      h('dt', {}, 'Serving'), h('dd', {}, yesNo(ext.active)),
      ext.error ? [h('dt', {}, 'Error'), h('dd', { class: 'error' }, ext.error)] : null,
      h('dt', {}, 'Health'), h('dd', {}, badge(health.now.status), ' ', health.now.message || ''),
      h('dt', {}, 'Configuration'), h('dd', {}, ext.config.last_error
        ? h('span', { class: 'error' }, `last change failed: ${ext.config.last_error}`)
        : `version ${ext.config.etag}`)),
    actions,
    confirmArea,
    permissionsSection(ext, feedback, again),
    healthSection(health),
    metricsSection(metrics));
}

async function disable(name, feedback, done) {
  feedback.replaceChildren(h('p', {}, `Disabling ${name}…`));
  try {
    await api('POST', `/api/v1/extensions/${encodeURIComponent(name)}/disable`);
    say(`${name} is disabled: its routes answer 404 and its hooks no longer run, on every instance.`);
    done();
  } catch (e) {
    fail(feedback, e);
  }
}

/**
 * Shows what enabling grants, with a choice for each permission not held yet; confirming
 * enables (sending grant_all when every one stays ticked, else the ticked ones). For an
 * enabled extension this grants what it still lacks.
 */
function confirmEnable(ext, area, feedback, done) {
  const verb = ext.enabled ? 'Grant' : 'Enable';
  const pending = ext.permissions.pending;
  const granted = ext.permissions.granted;
  const boxes = pending.map((perm) => h('input', { type: 'checkbox', value: perm, checked: true, id: `grant-${perm}` }));
  const form = h('form', { id: 'enable-form' },
    h('fieldset', { class: 'confirm' },
      h('legend', {}, ext.enabled ? `Grant permissions to ${ext.name}?` : `Enable ${ext.name}?`),
      granted.length
        ? h('p', {}, 'It keeps the permissions it holds: ', granted.map((p, i) => [i ? ', ' : '', h('code', {}, p)]), '.')
        : null,
      pending.length
        ? [h('p', {}, ext.enabled
          ? 'It requests these permissions, which it does not hold (untick one to leave it ungranted):'
          : 'Enabling grants it these permissions it requests (untick one to enable it without it):'),
          h('ul', { id: 'grants-to-give' }, pending.map((perm, i) => h('li', {}, boxes[i], h('label', { for: `grant-${perm}` }, perm))))]
        : h('p', { id: 'grants-to-give' }, 'It needs no new permission.'),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', id: 'confirm-enable' }, ext.enabled ? 'Grant' : (pending.length ? 'Grant and enable' : 'Enable')),
        h('button', { type: 'button', class: 'secondary', onclick: () => area.replaceChildren() }, 'Cancel'))));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    const body = chosen.length === pending.length ? { grant_all: true } : { grant: chosen };
    try {
      const { data } = await api('POST', `/api/v1/extensions/${encodeURIComponent(ext.name)}/enable`, { body });
      const now = data.permissions.granted.join(', ') || 'nothing';
      const missing = data.permissions.pending.length ? `; not granted: ${data.permissions.pending.join(', ')}` : '';
      say(`${verb === 'Grant' ? 'Granted' : 'Enabled'}: ${ext.name} holds ${now}${missing}.`);
      done();
    } catch (e) {
      fail(feedback, e);
    }
  });
  area.replaceChildren(form);
  form.querySelector('button').focus();
}

function permissionsSection(ext, feedback, done) {
  const p = ext.permissions;
  const rows = p.requested.map((perm) => {
    const held = p.granted.includes(perm);
    return h('tr', { 'data-permission': perm },
      h('td', {}, h('code', {}, perm)),
      h('td', { class: 'state' }, held ? badge('granted', 'yes') : badge('pending', 'no')),
      h('td', {}, held
        ? h('button', { type: 'button', class: 'secondary', 'aria-label': `Revoke ${perm}`, onclick: () => revoke(ext.name, perm, feedback, done) }, 'Revoke')
        : h('span', { class: 'muted' }, ext.enabled ? 'not granted: calls needing it fail' : 'you decide when you enable it')));
  });
  return h('section', { 'aria-labelledby': 'permissions-title' },
    h('h2', { id: 'permissions-title' }, 'Permissions'),
    p.requested.length
      ? h('table', { id: 'permissions' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Requested'), h('th', { scope: 'col' }, 'State'), h('th', { scope: 'col' }, ''))),
        h('tbody', {}, rows))
      : h('p', {}, 'It requests no permission.'),
    h('p', { class: 'muted' }, `Calls refused for lack of a permission: ${p.denied_calls}.`));
}

async function revoke(name, perm, feedback, done) {
  try {
    await api('DELETE', `/api/v1/extensions/${encodeURIComponent(name)}/grants/${encodeURIComponent(perm)}`);
    say(`${perm} revoked from ${name}: calls needing it fail from now on.`);
    done();
  } catch (e) {
    fail(feedback, e);
  }
}

function healthSection(health) {
  const rows = health.history.slice().reverse().map((c) => h('tr', {},
    h('td', {}, when(c.at)), h('td', {}, badge(c.status)), h('td', {}, c.message || ''),
    h('td', { class: 'num' }, String(c.took_ms))));
  return h('section', { 'aria-labelledby': 'health-title' },
    h('h2', { id: 'health-title' }, 'Health history'),
    h('p', {}, 'Now: ', badge(health.now.status), ' ', health.now.message || '',
      health.now.checked_at ? ` (checked ${when(health.now.checked_at)})` : ''),
    rows.length
      ? h('table', { id: 'health-history' },
        h('caption', {}, 'The most recent checks, newest first.'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Status'),
          h('th', { scope: 'col' }, 'Message'), h('th', { scope: 'col', class: 'num' }, 'Took (ms)'))),
        h('tbody', {}, rows))
      : h('p', { class: 'muted' }, 'No check has run yet.'));
}

function metricsSection(metrics) {
  const facts = (title, object) => h('section', {},
    h('h2', {}, title),
    h('dl', { class: 'facts' }, Object.entries(object || {}).map(([k, v]) => [
      h('dt', {}, k.replaceAll('_', ' ')),
      h('dd', {}, v === null ? '—' : (typeof v === 'object' ? JSON.stringify(v) : String(v)))])));
  return [facts('Counters (since the server started)', metrics.stats), facts('Limits', metrics.limits),
    Object.keys(metrics.hooks || {}).length ? facts('Hook calls', metrics.hooks) : null];
}
