// Solobase admin dashboard: a single page over the admin API (/api/v1/...).
//
// Rules this file keeps:
// - Nothing from the server is ever parsed as HTML: elements are built with h(), and every
//   value goes in as a text node or an attribute.
// - No inline code: the page's Content-Security-Policy allows scripts and styles from this
//   origin only.
// - The login token lives in sessionStorage (this tab, until it closes or you log out); any
//   401 from the API sends you back to the login form.
'use strict';

(() => {
  const TOKEN = 'solobase.admin.token';
  const EMAIL = 'solobase.admin.email';
  const USER_ID = 'solobase.admin.id';
  /** How often the extensions list refreshes; request rates are measured over this interval. */
  const POLL_MS = 5000;
  /** Audit entries per page, unless the address says `limit=` (1 to 500, the API's most). */
  const AUDIT_PAGE = 50;

  const main = document.getElementById('main');
  const statusLine = document.getElementById('status');
  /** Timers of the current view, cleared when the view changes. */
  let timers = [];
  /** Bumped at every navigation: an older view's late answers are dropped. */
  let generation = 0;

  // --- building blocks -----------------------------------------------------------------------

  /** Creates element `tag` with attributes `attrs` (on* are listeners) and children (text or nodes). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
      else if (key === 'class') el.className = value;
      else if (value === true) el.setAttribute(key, '');
      else el.setAttribute(key, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  /** Replaces `target`'s content with `nodes` (nested lists flattened, empty ones skipped). */
  function put(target, ...nodes) {
    target.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
  }

  function show(...nodes) {
    put(main, ...nodes);
  }

  function say(text) {
    statusLine.textContent = text;
  }

  function badge(value, cls) {
    return h('span', { class: `badge ${cls || value}` }, value);
  }

  function yesNo(value) {
    return badge(value ? 'yes' : 'no');
  }

  function when(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function extensionHref(name, tail) {
    return `#/extensions/${encodeURIComponent(name)}${tail || ''}`;
  }

  // --- the API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** Calls the API; resolves to {data, headers} or throws an ApiError (with the server's code and message). */
  async function api(method, path, options = {}) {
    const token = sessionStorage.getItem(TOKEN);
    const headers = Object.assign({}, options.headers);
    if (token && !options.anonymous) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: 'no-store' };
    if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'unreachable', `The server cannot be reached (${e.message}); try again.`);
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!res.ok) {
      const error = (data && data.error) || {};
      const failure = new ApiError(res.status, error.code || `http_${res.status}`,
        error.message || text || res.statusText);
      if (res.status === 401 && !options.anonymous) {
        logOut(`You were logged out: ${failure.message}`);
      }
      throw failure;
    }
    return { data, headers: res.headers };
  }

  /** Shows `error` in `target` (an element), unless it already sent us to the login form. */
  function fail(target, error) {
    if (error instanceof ApiError && error.status === 401) return;
    target.replaceChildren(h('span', { class: 'error', role: 'alert' }, describe(error)));
  }

  function describe(error) {
    if (error instanceof ApiError) {
      return error.status ? `${error.message} (${error.status} ${error.code})` : error.message;
    }
    return `Unexpected error: ${error && error.message ? error.message : error}`;
  }

  // --- session -------------------------------------------------------------------------------

  function logOut(notice) {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(EMAIL);
    sessionStorage.removeItem(USER_ID);
    viewLogin(notice);
  }

  function viewLogin(notice) {
    generation += 1;
    stopTimers();
    document.getElementById('nav').hidden = true;
    document.title = 'Log in · Solobase admin';
    const error = h('p', { id: 'login-error', class: 'error', role: 'alert' });
    const email = h('input', { id: 'email', name: 'email', type: 'email', autocomplete: 'username', required: true });
    const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const button = h('button', { type: 'submit' }, 'Log in');
    const form = h('form', { id: 'login-form', class: 'login', novalidate: true },
      h('h1', {}, 'Log in'),
      notice ? h('p', { class: 'notice', id: 'login-notice' }, notice) : null,
      h('p', { class: 'muted' }, 'For administrators of this Solobase server.'),
      h('label', { for: 'email' }, 'Email'), email,
      h('label', { for: 'password' }, 'Password'), password,
      h('div', { class: 'actions' }, button),
      error);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.textContent = '';
      button.disabled = true;
      try {
        const { data } = await api('POST', '/api/v1/auth/login', {
          anonymous: true,
          body: { email: email.value, password: password.value },
        });
        if (!data || !data.user || data.user.role !== 'admin') {
          error.textContent = 'This account is not an administrator: the dashboard is for administrators only.';
          return;
        }
        sessionStorage.setItem(TOKEN, data.token);
        sessionStorage.setItem(EMAIL, data.user.email);
        sessionStorage.setItem(USER_ID, data.user.id);
        if (location.hash === '' || location.hash === '#/' || location.hash.startsWith('#/login')) {
          location.hash = '#/extensions';
        } else {
          route();
        }
      } catch (e) {
        error.textContent = describe(e);
      } finally {
        button.disabled = false;
      }
    });
    show(form);
    email.focus();
  }

  // --- routing -------------------------------------------------------------------------------

  function stopTimers() {
    for (const t of timers) clearInterval(t);
    timers = [];
  }

  /** Shows the view the address names; `keepStatus` keeps the status line's message. */
  function route(keepStatus) {
    stopTimers();
    if (keepStatus !== true) say('');
    generation += 1;
    const gen = generation;
    if (!sessionStorage.getItem(TOKEN)) {
      viewLogin();
      return;
    }
    document.getElementById('nav').hidden = false;
    document.getElementById('who').textContent = sessionStorage.getItem(EMAIL) || '';
    const [path, query] = location.hash.replace(/^#/, '').split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(query || '');
    if (parts[0] === 'extensions' && parts.length === 2) return viewExtension(gen, parts[1]);
    if (parts[0] === 'extensions' && parts.length === 3 && parts[2] === 'config') return viewConfig(gen, parts[1]);
    if (parts[0] === 'audit') return viewAudit(gen, params);
    if (path !== '/extensions') {
      history.replaceState(null, '', '#/extensions');
    }
    return viewExtensions(gen);
  }

  /** Whether view `gen` is still the one on screen. */
  function current(gen) {
    return gen === generation;
  }

  // --- the extensions list -------------------------------------------------------------------

  function viewExtensions(gen) {
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
        if (current(gen)) fail(problem, e);
        return;
      }
      if (!current(gen)) return;
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
    timers.push(setInterval(refresh, POLL_MS));
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

  // --- one extension -------------------------------------------------------------------------

  async function viewExtension(gen, name) {
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
      if (current(gen)) {
        show(h('p', {}, h('a', { href: '#/extensions' }, '← All extensions')), h('h1', {}, name), feedback);
        fail(feedback, e);
      }
      return;
    }
    if (!current(gen)) return;
    const again = () => { if (current(gen)) route(true); };
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

  // --- configuration -------------------------------------------------------------------------

  async function viewConfig(gen, name) {
    document.title = `${name} configuration · Solobase admin`;
    const back = h('p', {}, h('a', { href: extensionHref(name) }, `← ${name}`));
    const feedback = h('div', { id: 'config-feedback' });
    show(back, h('h1', {}, `${name}: configuration`), feedback, h('p', {}, 'Loading…'));
    let loaded;
    try {
      ({ data: loaded } = await api('GET', `/api/v1/extensions/${encodeURIComponent(name)}/config`));
    } catch (e) {
      if (current(gen)) {
        show(back, h('h1', {}, `${name}: configuration`), feedback);
        fail(feedback, e);
      }
      return;
    }
    if (!current(gen)) return;
    let etag = loaded.etag;
    const editor = h('textarea', {
      id: 'config-text', rows: 16, spellcheck: 'false',
      'aria-describedby': 'config-help config-problems',
    });
    editor.value = JSON.stringify(loaded.config === null ? {} : loaded.config, null, 2);
    const version = h('span', { id: 'config-etag' }, etag);
    const problems = h('ul', { id: 'config-problems', class: 'problems', 'aria-live': 'polite' });
    const save = h('button', { type: 'submit', id: 'config-save' }, 'Save');
    const form = h('form', { id: 'config-form' },
      h('label', { for: 'config-text' }, 'Configuration (JSON)'),
      h('p', { class: 'muted', id: 'config-help' },
        'The whole configuration as a JSON object; keys left out take their defaults. It is checked against the ',
        'extension\'s schema and offered to the extension before it replaces the running one, on every instance. ',
        'Version: ', version, '.'),
      editor, problems,
      h('div', { class: 'actions' }, save,
        h('button', { type: 'button', class: 'secondary', id: 'config-reload', onclick: () => route() }, 'Load the current configuration')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      feedback.replaceChildren();
      problems.replaceChildren();
      editor.removeAttribute('aria-invalid');
      let value;
      try {
        value = JSON.parse(editor.value);
      } catch (e) {
        markInvalid(editor, problems, [{ key: null, message: `This is not valid JSON: ${e.message}` }]);
        return;
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        markInvalid(editor, problems, [{ key: null, message: 'The configuration must be a JSON object, e.g. {"key": "value"}.' }]);
        return;
      }
      save.disabled = true;
      try {
        const { data } = await api('PUT', `/api/v1/extensions/${encodeURIComponent(name)}/config`, {
          body: value, headers: { 'If-Match': `"${etag}"` },
        });
        etag = data.etag;
        version.textContent = etag;
        feedback.replaceChildren(h('p', { class: 'notice', id: 'config-saved' },
          `Saved and applied (version ${etag}).`));
      } catch (e) {
        if (e instanceof ApiError && e.status === 400) {
          markInvalid(editor, problems, parseProblems(e.message));
        } else if (e instanceof ApiError && e.status === 412) {
          feedback.replaceChildren(h('p', { class: 'error', role: 'alert', id: 'config-stale' },
            'Someone changed this configuration after you loaded it, so your change was not saved ',
            '(412: the version you edited is no longer the current one). Copy your text if you need it, ',
            'then choose "Load the current configuration" and make your change again.'));
        } else if (e instanceof ApiError && e.code === 'config_refused') {
          markInvalid(editor, problems, [{ key: null, message: e.message }]);
        } else {
          fail(feedback, e);
        }
      } finally {
        save.disabled = false;
      }
    });
    show(back, h('h1', {}, `${name}: configuration`), feedback, form);
  }

  /**
   * The server reports each problem on its own line as
   * "<file>: key `a.b[0]`: <what is wrong>" or "<file>: (top level): <what is wrong>"
   * (see src/extensions/config_file.rs); anything else is shown whole.
   */
  function parseProblems(message) {
    return message.split('\n').filter((line) => line.trim()).map((line) => {
      const keyed = line.match(/: key `([^`]+)`: (.*)$/);
      if (keyed) return { key: keyed[1], message: keyed[2] };
      const top = line.match(/: \(top level\): (.*)$/);
      if (top) return { key: null, message: top[1] };
      return { key: null, message: line };
    });
  }

  /** Lists `list` under the editor, each next to its key path, with a button selecting that key. */
  function markInvalid(editor, problems, list) {
    editor.setAttribute('aria-invalid', 'true');
    problems.replaceChildren(...list.map((p) => h('li', { 'data-key': p.key || '' },
      p.key ? [h('code', {}, p.key), ': '] : null,
      p.message,
      p.key ? h('button', { type: 'button', class: 'secondary', onclick: () => selectKey(editor, p.key) }, 'Show') : null)));
    editor.focus();
  }

  /** Selects the last segment of key path `key` in the editor's text. */
  function selectKey(editor, key) {
    const last = key.split('.').pop().replace(/\[\d+\]$/, '');
    const at = editor.value.indexOf(JSON.stringify(last));
    editor.focus();
    if (at >= 0) editor.setSelectionRange(at, at + last.length + 2);
  }

  // --- audit log -----------------------------------------------------------------------------

  async function viewAudit(gen, params) {
    document.title = 'Audit log · Solobase admin';
    const action = h('input', { id: 'audit-action', name: 'action', value: params.get('action') || '', placeholder: 'e.g. extension.enable', list: 'audit-actions' });
    const extension = h('input', { id: 'audit-extension', name: 'extension', value: params.get('extension') || '', placeholder: 'e.g. webhooks' });
    const actions = h('datalist', { id: 'audit-actions' },
      ['auth.admin_login', 'config.reload', 'extension.auto_disabled', 'extension.config', 'extension.disable',
        'extension.enable', 'extension.grant', 'extension.migrate', 'extension.panic', 'extension.permission_denied',
        'extension.purge', 'extension.rate_limited', 'extension.revoke', 'extension.rollback', 'role.grant',
        'role.revoke'].map((a) => h('option', { value: a })));
    const filters = h('form', { id: 'audit-filters', class: 'filters' },
      h('div', {}, h('label', { for: 'audit-action' }, 'Action'), action, actions),
      h('div', {}, h('label', { for: 'audit-extension' }, 'Extension'), extension),
      h('button', { type: 'submit' }, 'Filter'));
    filters.addEventListener('submit', (event) => {
      event.preventDefault();
      const q = new URLSearchParams();
      if (action.value.trim()) q.set('action', action.value.trim());
      if (extension.value.trim()) q.set('extension', extension.value.trim());
      if (params.get('limit')) q.set('limit', params.get('limit'));
      location.hash = `#/audit${q.toString() ? `?${q}` : ''}`;
    });
    const feedback = h('div', { id: 'audit-feedback' });
    const body = h('tbody', { id: 'audit-body' });
    const pager = h('div', { class: 'actions' });
    show(h('h1', {}, 'Audit log'), filters, feedback,
      h('table', { id: 'audit' },
        h('caption', {}, 'Newest first. Every administrator action, refused attempt and enforcement, kept for good.'),
        h('thead', {}, h('tr', {}, ['When', 'Actor', 'Action', 'Extension', 'Result', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
        body),
      pager);

    /** `before` cursors of the pages shown so far: the first page has none. */
    const pages = [null];
    const asked = Number.parseInt(params.get('limit') || '', 10);
    const pageSize = asked >= 1 && asked <= 500 ? asked : AUDIT_PAGE;
    const me = `user:${sessionStorage.getItem(USER_ID)}`;
    async function load() {
      const q = new URLSearchParams({ limit: String(pageSize) });
      if (params.get('action')) q.set('action', params.get('action'));
      if (params.get('extension')) q.set('extension', params.get('extension'));
      const before = pages[pages.length - 1];
      if (before !== null) q.set('before', String(before));
      let page;
      try {
        ({ data: page } = await api('GET', `/api/v1/audit?${q}`));
      } catch (e) {
        if (current(gen)) fail(feedback, e);
        return;
      }
      if (!current(gen)) return;
      body.replaceChildren(...page.entries.map((e) => h('tr', { 'data-action': e.action, 'data-id': e.id },
        h('td', {}, when(e.at)), h('td', {}, e.actor === me ? `you (${sessionStorage.getItem(EMAIL)})` : e.actor), h('td', {}, h('code', {}, e.action)),
        h('td', {}, e.extension || '—'), h('td', { class: 'result' }, badge(e.result, e.result === 'ok' ? 'yes' : 'no')),
        h('td', {}, detailList(e.detail)))));
      if (!page.entries.length) body.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No entries.')));
      put(pager,
        pages.length > 1 ? h('button', { type: 'button', class: 'secondary', id: 'audit-newer', onclick: () => { pages.pop(); load(); } }, '← Newer') : null,
        page.next !== null ? h('button', { type: 'button', class: 'secondary', id: 'audit-older', onclick: () => { pages.push(page.next); load(); } }, 'Older →') : null,
        h('span', { class: 'muted', id: 'audit-page' }, `Page ${pages.length}, ${pageSize} entries a page`));
    }
    await load();
  }

  /** An audit entry's detail as "key: value" lines. */
  function detailList(detail) {
    const entries = Object.entries(detail || {});
    if (!entries.length) return '';
    return h('dl', { class: 'detail' }, entries.map(([key, value]) => [
      h('dt', {}, key),
      h('dd', {}, Array.isArray(value) ? value.join(', ')
        : (typeof value === 'string' ? value : JSON.stringify(value)))]));
  }

  // --- start ---------------------------------------------------------------------------------

  document.getElementById('logout').addEventListener('click', () => {
    logOut('You have logged out. (The token stays valid on the server until it expires.)');
    history.replaceState(null, '', '#/login');
  });
  window.addEventListener('hashchange', () => route());
  route();
})();
