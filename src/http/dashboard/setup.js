// The first run: the one-time link Solobase prints at start while no administrator exists
// (#/setup/<token>) opens this form, which creates the first administrator and logs it in.
// The token travels in the address's fragment, which the browser never sends to a server (nor
// in a Referer): only this page reads it and posts it once.
import { api, EMAIL, TOKEN, USER_ID } from './api.js';
import { describe, h, show } from './dom.js';

/** Shows the setup form for `token`; `done()` is called once the administrator is logged in. */
export function viewSetup(token, done) {
  document.getElementById('nav').hidden = true;
  document.title = 'Create the administrator · Solobase admin';
  const error = h('p', { id: 'setup-error', class: 'error', role: 'alert' });
  const email = h('input', { id: 'setup-email', name: 'email', type: 'email', autocomplete: 'username', required: true });
  const password = h('input', { id: 'setup-password', name: 'password', type: 'password', autocomplete: 'new-password', required: true });
  const again = h('input', { id: 'setup-again', name: 'again', type: 'password', autocomplete: 'new-password', required: true });
  const button = h('button', { type: 'submit' }, 'Create the administrator');
  const form = h('form', { id: 'setup-form', class: 'login', novalidate: true },
    h('h1', {}, 'Welcome to Solobase'),
    h('p', { class: 'muted' }, 'No administrator exists yet. Create the first one: it can then manage users, extensions and everything else here. This link works once.'),
    h('label', { for: 'setup-email' }, 'Email'), email,
    h('label', { for: 'setup-password' }, 'Password'), password,
    h('label', { for: 'setup-again' }, 'Password again'), again,
    h('div', { class: 'actions' }, button),
    error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    if (password.value !== again.value) {
      error.textContent = 'The two passwords differ: type the same one twice.';
      return;
    }
    button.disabled = true;
    try {
      const { data } = await api('POST', '/api/v1/auth/setup', {
        anonymous: true,
        body: { token, email: email.value, password: password.value },
      });
      sessionStorage.setItem(TOKEN, data.token);
      sessionStorage.setItem(EMAIL, data.user.email);
      sessionStorage.setItem(USER_ID, data.user.id);
      // The link is spent: take it out of the address and the history.
      history.replaceState(null, '', '#/extensions');
      done();
    } catch (e) {
      error.textContent = describe(e);
    } finally {
      button.disabled = false;
    }
  });
  show(form);
  email.focus();
}
