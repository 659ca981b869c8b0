// REST calls to the messages server. Every function returns a promise and
// rejects with an ApiError carrying the server's own message.

/** ApiError is a failed request: status 0 means the server was unreachable. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

// The token of a server that requires one, kept for this tab only.
const TOKEN_KEY = "messages.token";
const unauthorized = new Set();

/** getToken returns the token kept for this tab, or "". */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

/** setToken keeps a token for this tab (sessionStorage); "" forgets it. */
export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts until the page is left
  }
}

/** onUnauthorized calls fn(message) whenever the server answers 401. */
export function onUnauthorized(fn) {
  unauthorized.add(fn);
}

/** ID_PATTERN is the channel id syntax the server accepts ("." and ".." excepted). */
export const ID_PATTERN = /^(?!\.\.?$)[A-Za-z0-9._:-]{1,128}$/;

// request sends one request; quiet ones do not bring up the token prompt
// on a 401.
async function request(method, path, { json, text, signal, quiet = false } = {}) {
  const init = { method, headers: {}, signal, cache: "no-store" };
  const token = getToken();
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (text !== undefined) {
    init.headers["Content-Type"] = "text/plain; charset=utf-8";
    init.body = text;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "cannot reach the server");
  }
  const body = await res.text();
  let data = null;
  if (body !== "") {
    try {
      data = JSON.parse(body);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const msg = data && typeof data.error === "string" ? data.error : `${res.status} ${res.statusText}`.trim();
    if (res.status === 401 && !quiet) for (const fn of unauthorized) fn(msg);
    throw new ApiError(res.status, msg);
  }
  return data;
}

const enc = encodeURIComponent;

/** listChannels returns one page: {channels, next}. */
export function listChannels({ after = "", limit = 200, signal } = {}) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (after) q.set("after", after);
  return request("GET", `channels?${q}`, { signal });
}

/** getStats reads the server's compact stats (GET /stats). */
export function getStats({ signal } = {}) {
  return request("GET", "stats", { signal, quiet: true });
}

/** historyPage reads up to limit messages after seq from: {messages, next}. */
export function historyPage(id, from, limit, { signal } = {}) {
  const q = new URLSearchParams({ from: String(from), limit: String(limit) });
  return request("GET", `channels/${enc(id)}/messages?${q}`, { signal });
}

/** getChannel describes one channel. */
export function getChannel(id, { signal } = {}) {
  return request("GET", `channels/${enc(id)}`, { signal });
}

/**
 * createChannel creates a channel; id may be empty (the server picks one)
 * and generator, if given, is {freq, max}.
 */
export function createChannel({ id = "", generator = null } = {}) {
  const body = {};
  if (id) body.id = id;
  if (generator) body.generator = generator;
  return request("POST", "channels", { json: body });
}

/** publish appends one message and resolves to {seq}. */
export function publish(id, data) {
  return request("POST", `channels/${enc(id)}/messages`, { text: data });
}

/** closeChannel ends a channel and resolves to {last_seq}. */
export function closeChannel(id) {
  return request("POST", `channels/${enc(id)}/close`);
}

/** deleteChannel deletes a channel and its history (admin only). */
export function deleteChannel(id) {
  return request("DELETE", `channels/${enc(id)}`);
}

/** socketURL is the WebSocket subscription address for a channel. */
export function socketURL(id, from, epoch) {
  const u = new URL("ws", document.baseURI);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.searchParams.set("id", id);
  u.searchParams.set("from", String(from));
  if (epoch) u.searchParams.set("epoch", epoch);
  // Browsers cannot set headers on a WebSocket: the server takes the token
  // in the query here.
  const token = getToken();
  if (token) u.searchParams.set("token", token);
  return u.toString();
}

/** textURL is the plain text stream of a channel (GET /?id=). */
export function textURL(id) {
  const u = new URL("./", document.baseURI);
  u.searchParams.set("id", id);
  const token = getToken();
  if (token) u.searchParams.set("token", token);
  return u.toString();
}
