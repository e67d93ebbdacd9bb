// Solobase admin dashboard: a single page over the admin API (/api/v1/...), in plain
// JavaScript modules served from the binary. This one logs in and out and routes the address
// (#/extensions, #/extensions/<name>, #/extensions/<name>/config, #/users, #/audit, and the
// first run's #/setup/<token>) to a view.
//
// Rules every module keeps:
// - Nothing from the server is ever parsed as HTML: elements are built with h() (dom.js), and
//   every value goes in as a text node or an attribute.
// - No inline code: the page's Content-Security-Policy allows scripts and styles from this
//   origin only.
// - The login token lives in sessionStorage (api.js); any 401 from the API sends you back to
//   the login form. Logging out revokes the token on the server, then forgets it.
import { api, ApiError, EMAIL, onUnauthorized, TOKEN, USER_ID } from './api.js';
import { viewAudit } from './audit.js';
import { viewConfig } from './config.js';
import { describe, h, say, show } from './dom.js';
import { viewExtension, viewExtensions } from './extensions.js';
import { viewSetup } from './setup.js';
import { viewUsers } from './users.js';

/** Timers of the current view, cleared when the view changes. */
let timers = [];
/** Bumped at every navigation: an older view's late answers are dropped. */
let generation = 0;

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
  // The first-run link (#/setup/<token>) works whether or not someone is logged in here.
  const setup = location.hash.match(/^#\/setup\/([0-9A-Za-z_-]+)$/);
  if (setup) {
    viewSetup(setup[1], () => route());
    return;
  }
  if (!sessionStorage.getItem(TOKEN)) {
    viewLogin();
    return;
  }
  document.getElementById('nav').hidden = false;
  document.getElementById('who').textContent = sessionStorage.getItem(EMAIL) || '';
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || '');
  const view = viewOf(gen);
  if (parts[0] === 'extensions' && parts.length === 2) return viewExtension(view, parts[1]);
  if (parts[0] === 'extensions' && parts.length === 3 && parts[2] === 'config') return viewConfig(view, parts[1]);
  if (parts[0] === 'audit') return viewAudit(view, params);
  if (parts[0] === 'users') return viewUsers(view, params);
  if (path !== '/extensions') {
    history.replaceState(null, '', '#/extensions');
  }
  return viewExtensions(view);
}

/**
 * What a view may do with its place on screen: know whether it is still shown (a late answer
 * for a view left is dropped), refresh on a timer (stopped when it is left), show itself
 * again keeping the status line's message (reload) or not (reroute).
 */
function viewOf(gen) {
  const current = () => gen === generation;
  return {
    current,
    every: (refresh, ms) => timers.push(setInterval(refresh, ms)),
    reload: () => { if (current()) route(true); },
    reroute: () => { if (current()) route(); },
  };
}

document.getElementById('logout').addEventListener('click', async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  let notice = 'You have logged out: the token is revoked on the server.';
  try {
    await api('POST', '/api/v1/auth/logout');
  } catch (e) {
    // A 401 means the token had ended already; anything else is worth saying.
    if (!(e instanceof ApiError && e.status === 401)) {
      notice = `You have logged out here, but the server could not revoke the token: ${describe(e)}`;
    }
  } finally {
    button.disabled = false;
  }
  logOut(notice);
  history.replaceState(null, '', '#/login');
});
onUnauthorized(logOut);
window.addEventListener('hashchange', () => route());
route();
