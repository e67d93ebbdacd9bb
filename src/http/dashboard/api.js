// The admin API as the dashboard calls it: the login token kept in this tab's sessionStorage
// (until the tab closes or you log out), and one error type carrying the server's code and
// message. A 401 calls the handler set with onUnauthorized (which shows the login form).

export const TOKEN = 'solobase.admin.token';
export const EMAIL = 'solobase.admin.email';
export const USER_ID = 'solobase.admin.id';

let unauthorized = () => {};

/** Sets what happens when the API answers 401 to a request made with the token. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API; resolves to {data, headers} or throws an ApiError (with the server's code and message). */
export async function api(method, path, options = {}) {
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
      unauthorized(`You were logged out: ${failure.message}`);
    }
    throw failure;
  }
  return { data, headers: res.headers };
}
