// The viewer's UI: a hash router with two views, the channel list (home)
// and the watch view. Data from the server is only ever rendered with
// textContent, text nodes and attributes.

import * as api from "./api.js";
import { ChannelList } from "./list.js";
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
let watcher = null;

function parseRoute() {
  const m = /^#\/watch\/(.+)$/.exec(location.hash);
  if (m) {
    let id;
    try {
      id = decodeURIComponent(m[1]);
    } catch {
      id = "";
    }
    return { view: "watch", id };
  }
  const q = new URLSearchParams(location.hash.replace(/^#\/?\??/, ""));
  return { view: "home", filter: q.get("filter") || "" };
}

function route() {
  const r = parseRoute();
  if (watcher && (r.view !== "watch" || r.id !== watcher.id)) {
    watcher.stop();
    watcher = null;
  }
  if (r.view === "watch") {
    list.stop();
    home.hidden = true;
    watch.hidden = false;
    if (!watcher) {
      watcher = new Watcher(r.id);
      watcher.start();
    }
    document.title = `${r.id} · messages`;
    return;
  }
  watch.hidden = true;
  home.hidden = false;
  document.title = "messages";
  list.setFilter(r.filter);
  list.start();
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
