// An extension's configuration editor: the running configuration as JSON, saved with the
// version it replaces (If-Match); the server's validation errors shown next to their key paths.
import { api, ApiError } from './api.js';
import { extensionHref, fail, h, show } from './dom.js';

export async function viewConfig(view, name) {
  document.title = `${name} configuration · Solobase admin`;
  const back = h('p', {}, h('a', { href: extensionHref(name) }, `← ${name}`));
  const feedback = h('div', { id: 'config-feedback' });
  show(back, h('h1', {}, `${name}: configuration`), feedback, h('p', {}, 'Loading…'));
  let loaded;
  try {
    ({ data: loaded } = await api('GET', `/api/v1/extensions/${encodeURIComponent(name)}/config`));
  } catch (e) {
    if (view.current()) {
      show(back, h('h1', {}, `${name}: configuration`), feedback);
      fail(feedback, e);
    }
    return;
  }
  if (!view.current()) return;
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
      h('button', { type: 'button', class: 'secondary', id: 'config-reload', onclick: () => view.reroute() }, 'Load the current configuration')));
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
