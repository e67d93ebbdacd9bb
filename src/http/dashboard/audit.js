// The audit log: filters (action, extension) in the address, pages of entries newest first.
import { api, EMAIL, USER_ID } from './api.js';
import { badge, fail, h, put, show, when } from './dom.js';

/** Audit entries per page, unless the address says `limit=` (1 to 500, the API's most). */
const AUDIT_PAGE = 50;

export async function viewAudit(view, params) {
  document.title = 'Audit log · Solobase admin';
  const action = h('input', { id: 'audit-action', name: 'action', value: params.get('action') || '', placeholder: 'e.g. extension.enable', list: 'audit-actions' });
  const extension = h('input', { id: 'audit-extension', name: 'extension', value: params.get('extension') || '', placeholder: 'e.g. webhooks' });
  const actions = h('datalist', { id: 'audit-actions' },
    ['auth.admin_login', 'config.reload', 'extension.auto_disabled', 'extension.config', 'extension.disable',
      'extension.enable', 'extension.grant', 'extension.migrate', 'extension.panic', 'extension.permission_denied',
      'extension.purge', 'extension.rate_limited', 'extension.revoke', 'extension.rollback', 'role.grant',
      'role.revoke', 'user.disable', 'user.enable', 'user.password', 'user.revoke_sessions'].map((a) => h('option', { value: a })));
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
      if (view.current()) fail(feedback, e);
      return;
    }
    if (!view.current()) return;
    body.replaceChildren(...page.entries.map((e) => h('tr', { 'data-action': e.action, 'data-id': e.id },
      h('td', {}, when(e.at)), h('td', {}, e.actor === me ? `you (${sessionStorage.getItem(EMAIL)})` : e.actor,
        e.client ? h('div', { class: 'muted client' }, `from ${e.client}`) : null), h('td', {}, h('code', {}, e.action)),
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
