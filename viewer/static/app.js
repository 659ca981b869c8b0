// The viewer's UI: a hash router with two views, the channel list (home)
// and the watch view. Data from the server is only ever rendered with
// textContent, text nodes and attributes.

import * as api from "./api.js";
import { ChannelList } from "./list.js";
import { ServerPanel } from "./panel.js";
import { Watcher } from "./watch.js";

const $ = (id) => document.getElementById(id);

const home = $("home-view");
const watch = $("watch-view");
const list = new ChannelList({
  table: $("channel-table"),
  filter: $("filter"),
  info: $("list-info"),
  error: $("list-error"),
  empty: $("list-empty"),
});
const panel = new ServerPanel($("server-panel"));
let watcher = null;

function parseRoute() {
  // #/watch/ID, or #/watch/ID?from=SEQ to start after SEQ.
  const m = /^#\/watch\/([^?]+)(?:\?(.*))?$/.exec(location.hash);
  if (m) {
    let id;
    try {
      id = decodeURIComponent(m[1]);
    } catch {
      id = "";
    }
    const from = Number(new URLSearchParams(m[2] || "").get("from") || 0);
    return { view: "watch", id, from: Number.isSafeInteger(from) && from > 0 ? from : 0 };
  }
  const q = new URLSearchParams(location.hash.replace(/^#\/?\??/, ""));
  return { view: "home", filter: q.get("filter") || "" };
}

// The token prompt: shown when the server answers 401, it keeps the token
// for this tab and starts the current view again with it.
const tokenForm = $("token-form");
const forget = $("forget-token");

function showTokenForm(msg) {
  $("token-reason").textContent = api.getToken()
    ? `The server refused the token: ${msg}.`
    : "Paste a token that lets you read (and, to publish, write) channels.";
  if (tokenForm.hidden) {
    tokenForm.hidden = false;
    $("token-input").focus();
  }
  // On the home view nothing else can be shown without a token: not an
  // empty list under the prompt.
  if (!watcher) {
    home.hidden = true;
    list.stop();
    panel.stop();
  }
}

function restart() {
  if (watcher) {
    watcher.stop();
    watcher = null;
  }
  list.stop();
  panel.stop();
  forget.hidden = !api.getToken();
  route();
}

api.onUnauthorized(showTokenForm);

tokenForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) {
    tokenForm.querySelector(".error").textContent = "Paste the token first.";
    return;
  }
  tokenForm.querySelector(".error").textContent = "";
  api.setToken(token);
  $("token-input").value = "";
  tokenForm.hidden = true;
  restart();
});

forget.addEventListener("click", () => {
  api.setToken("");
  restart();
});
forget.hidden = !api.getToken();

function route() {
  const r = parseRoute();
  if (watcher && (r.view !== "watch" || r.id !== watcher.id || r.from !== watcher.from)) {
    watcher.stop();
    watcher = null;
  }
  if (r.view === "watch") {
    list.stop();
    panel.stop();
    home.hidden = true;
    watch.hidden = false;
    if (!watcher) {
      watcher = new Watcher(r.id, r.from);
      watcher.start();
    }
    document.title = `${r.id} · messages`;
    return;
  }
  watch.hidden = true;
  home.hidden = !tokenForm.hidden;
  document.title = "messages";
  list.setFilter(r.filter);
  list.start();
  panel.start();
}

// A form's submit helper: disables the button while the request runs and
// shows the server's error next to the form.
function bindForm(form, action) {
  const err = form.querySelector(".error");
  const button = form.querySelector("button[type=submit]");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    button.disabled = true;
    try {
      await action(new FormData(form));
    } catch (e) {
      err.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
}

function readId(fd) {
  const id = String(fd.get("id") || "").trim();
  if (id && !api.ID_PATTERN.test(id)) {
    throw new Error("A channel id is 1 to 128 characters of letters, digits and . _ : - (but not \".\" or \"..\")");
  }
  return id;
}

bindForm($("start-form"), async (fd) => {
  const id = readId(fd);
  const freq = Number(fd.get("freq"));
  const max = Number(fd.get("max"));
  if (!(freq > 0)) throw new Error("The rate must be a positive number of lines per second.");
  if (!Number.isInteger(max) || max < 1) throw new Error("The number of lines must be a whole number ≥ 1.");
  const ch = await api.createChannel({ id, generator: { freq, max } });
  location.hash = `#/watch/${encodeURIComponent(ch.id)}`;
});

bindForm($("create-form"), async (fd) => {
  const id = readId(fd);
  const ch = await api.createChannel({ id });
  location.hash = `#/watch/${encodeURIComponent(ch.id)}`;
});

$("filter").addEventListener("input", () => {
  const f = $("filter").value;
  list.setFilter(f);
  const hash = f ? `#/?filter=${encodeURIComponent(f)}` : "#/";
  history.replaceState(null, "", hash);
});

// "/" focuses the filter on the home view, as many sites do.
document.addEventListener("keydown", (ev) => {
  if (ev.key !== "/" || home.hidden || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement) return;
  ev.preventDefault();
  $("filter").focus();
});

window.addEventListener("hashchange", route);
route();
