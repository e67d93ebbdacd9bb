// The accounts: each one's role, state and live sessions, with what an administrator may do
// about them — disable (which ends its sessions at once and refuses its logins), enable, and
// end its sessions. Every action goes through the admin API, which audits it.
import { api, USER_ID } from './api.js';
import { badge, fail, h, put, say, show, when } from './dom.js';

/** Accounts per page (the API gives at most 500). */
const USERS_PAGE = 100;

export async function viewUsers(view, params) {
  document.title = 'Users · Solobase admin';
  const feedback = h('div', { id: 'users-feedback' });
  const body = h('tbody', { id: 'users-body' });
  const pager = h('div', { class: 'actions' });
  show(h('h1', {}, 'Users'), feedback,
    h('table', { id: 'users' },
      h('caption', {}, 'In e-mail order. Disabling an account ends its sessions at once; its owner cannot log in until it is enabled again.'),
      h('thead', {}, h('tr', {}, ['E-mail', 'Role', 'State', 'Live sessions', 'Created', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
      body),
    pager);

  const after = params.get('after');
  const q = new URLSearchParams({ limit: String(USERS_PAGE) });
  if (after) q.set('after', after);
  let accounts;
  try {
    ({ data: accounts } = await api('GET', `/api/v1/users?${q}`));
  } catch (e) {
    if (view.current()) fail(feedback, e);
    return;
  }
  if (!view.current()) return;
  const me = sessionStorage.getItem(USER_ID);
  body.replaceChildren(...accounts.map((a) => row(a, a.id === me, feedback, view)));
  if (!accounts.length) body.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No accounts.')));
  put(pager,
    after ? h('a', { href: '#/users', id: 'users-first' }, '← First page') : null,
    accounts.length === USERS_PAGE
      ? h('a', { id: 'users-next', href: `#/users?${new URLSearchParams({ after: accounts[accounts.length - 1].email })}` }, 'Next →')
      : null);
}

/** One account's row; `self` when it is the administrator looking at it. */
function row(account, self, feedback, view) {
  const disabled = account.disabled_at !== null && account.disabled_at !== undefined;
  const act = (label, path, method, message) => h('button', {
    type: 'button',
    class: label === 'Disable' ? 'danger' : 'secondary',
    'data-action': label.toLowerCase().replace(/ /g, '-'),
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api(method, path);
        say(message);
        view.reload();
      } catch (e) {
        fail(feedback, e);
        event.target.disabled = false;
      }
    },
  }, label);
  const id = encodeURIComponent(account.id);
  // Your own account: Log out ends your session; disabling it would lock you out.
  const actions = self ? [h('span', { class: 'muted' }, '—')] : [
    disabled
      ? act('Enable', `/api/v1/users/${id}/enable`, 'POST', `Enabled ${account.email}.`)
      : act('Disable', `/api/v1/users/${id}/disable`, 'POST', `Disabled ${account.email}; its sessions are ended.`),
    act('End sessions', `/api/v1/users/${id}/sessions`, 'DELETE', `Ended the sessions of ${account.email}.`),
  ];
  return h('tr', { 'data-email': account.email },
    h('td', {}, account.email, self ? h('span', { class: 'muted' }, ' (you)') : null),
    h('td', {}, account.role),
    h('td', { class: 'state' }, disabled ? badge(`disabled since ${when(account.disabled_at)}`, 'no') : badge('enabled', 'yes')),
    h('td', { class: 'num sessions' }, String(account.live_sessions)),
    h('td', {}, when(account.created_at)),
    h('td', {}, h('div', { class: 'actions' }, actions)));
}
