// The demo client: Herald's REST API, and its live inbox through Herald's own JS client
// (clients/js, vendored as /static/vendor/herald-client.js): the page proves the client.
import { createHeraldClient } from "/static/vendor/herald-client.js";
import { api, el, formError, replaceChildren, timeAgo, toast } from "/static/js/common.js";

// localStorage, not sessionStorage: every tab of this browser shares the session, so a read in
// one tab can be seen clearing the badge in another.
const STORAGE_KEY = "herald.session";
const FRESH_MS = 10_000; // notifications older than this before the tab opened don't toast
const $ = (id) => document.getElementById(id);

const state = {
  session: null, // {token, userId, username}
  herald: null, // the Herald client: socket, inbox, unread count
  items: new Map(), // notification id -> inbox item, newest first when rendered
  unread: 0,
  since: 0, // when this tab signed in
};

// --- session ---------------------------------------------------------------------------------
function loadSession() {
  try {
    return JSON.parse(localStorage.getItem(STORAGE_KEY));
  } catch {
    return null;
  }
}

function startSession(session) {
  localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  enter(session);
}

async function logout() {
  const token = state.session?.token;
  localStorage.removeItem(STORAGE_KEY);
  leave();
  if (token) await api("/api/session", { method: "DELETE", token }).catch(() => {});
}

function enter(session) {
  state.session = session;
  state.since = Date.now();
  $("signed-out").hidden = true;
  $("signed-in").hidden = false;
  $("me").hidden = false;
  $("whoami").textContent = `Signed in as ${session.username}`;
  connect().then(() => refreshInbox()).catch(failed);
  refreshFriends().catch(failed);
}

// A rejected session token means the session is over (logged out elsewhere, or expired).
function failed(error) {
  if (error?.status === 401) logout();
  else console.error(error);
}

function leave() {
  state.herald?.close();
  state.herald = null;
  state.session = null;
  state.items.clear();
  setUnread(0);
  $("signed-out").hidden = false;
  $("signed-in").hidden = true;
  $("me").hidden = true;
  setConnection("offline", "Not connected");
}

// Another tab logged in or out: follow it.
window.addEventListener("storage", (event) => {
  if (event.key !== STORAGE_KEY) return;
  const session = loadSession();
  if (!session) leave();
  else if (session.token !== state.session?.token) {
    leave();
    enter(session);
  }
});

// --- connection --------------------------------------------------------------------------------
function setConnection(kind, text) {
  $("conn").dataset.state = kind;
  $("conn-text").textContent = text;
  $("conn-retry").hidden = true;
}

$("conn-retry").addEventListener("click", () => {
  setConnection("connecting", "Connecting…");
  state.herald?.connect();
});

// The server's WS_MAX_RECONNECT_ATTEMPTS (0: keep trying), from /api/client-config.
let clientConfig = null;
async function reconnectionAttempts() {
  clientConfig ??= await api("/api/client-config").catch(() => ({ wsMaxReconnectAttempts: 0 }));
  return clientConfig.wsMaxReconnectAttempts || Infinity;
}

// What the client says about its connection, in the indicator's words.
function showStatus({ state: kind, serverId, reconnects, attempt, signingIn, gaveUp, attempts }) {
  if (kind === "online") {
    const again = reconnects ? ` · reconnected ${reconnects}×` : "";
    setConnection("online", `Live on ${serverId}${again}`);
  } else if (kind === "connecting") {
    setConnection("connecting", signingIn ? "Signing in…" : "Connecting…");
  } else if (kind === "reconnecting") {
    setConnection("reconnecting", attempt ? `Reconnecting (attempt ${attempt})…` : "Connection lost, reconnecting…");
  } else if (gaveUp) {
    // Out of attempts: say so and let the person try again when they choose.
    setConnection("offline", `Offline: gave up after ${attempts} attempts`);
    $("conn-retry").hidden = false;
  }
}

async function connect() {
  const attempts = await reconnectionAttempts();
  if (!state.session) return; // signed out while the config loaded
  // The session token from logging in; an application would hand the client a token its
  // backend signed (see the README's "Use Herald from your app").
  const herald = createHeraldClient({
    url: location.origin,
    token: state.session.token,
    reconnectionAttempts: attempts,
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
  });
  state.herald = herald;
  // Events of a client this tab has since closed (signed out) change nothing.
  const on = (event, listener) => herald.on(event, (value) => state.herald === herald && listener(value));
  on("status", showStatus);
  on("authError", () => {
    toast($("toasts"), { title: "Session ended", message: "Please log in again.", kind: "broadcast" });
    logout();
  });
  on("reconnect", () => refreshInbox().catch(failed)); // reads made while away
  on("unreadCount", setUnread);

  // Each id comes once (the client drops repeats, and acknowledges every copy).
  on("notification", (n) => {
    // It may already be listed: the inbox request can return it a moment before the socket.
    if (!state.items.has(n.id)) {
      state.items.set(n.id, { ...n, isRead: Boolean(n.isRead) });
      renderInbox();
    }
    // A backlog caught up at sign-in goes to the inbox quietly; what is new pops up.
    const fresh = Date.parse(n.createdAt) >= state.since - FRESH_MS;
    if (!n.isRead && fresh) toast($("toasts"), { title: n.title, message: n.message });
    if (n.type.startsWith("friend_request")) refreshFriends().catch(failed);
  });
  on("read", ({ ids, all }) => {
    for (const item of state.items.values()) {
      if (all || ids.includes(item.id)) item.isRead = true;
    }
    renderInbox();
  });
  on("broadcast", (b) =>
    toast($("toasts"), { title: b.title, message: b.message, kind: "broadcast" }),
  );
}

// --- inbox ------------------------------------------------------------------------------------
function setUnread(count) {
  state.unread = Math.max(0, count);
  const badge = $("badge");
  badge.textContent = String(state.unread);
  badge.hidden = state.unread === 0;
  $("inbox-count").textContent = `${state.unread} unread`;
  $("inbox-button").setAttribute("aria-label", `Inbox, ${state.unread} unread`);
  document.title = state.unread ? `(${state.unread}) Herald demo` : "Herald demo";
}

async function refreshInbox() {
  const { herald } = state;
  if (!herald) return;
  const [page] = await Promise.all([herald.inbox({ limit: 50 }), herald.refreshUnreadCount()]);
  state.items = new Map(page.items.map((n) => [n.id, n]));
  renderInbox();
}

function renderInbox() {
  const items = [...state.items.values()].sort((a, b) => b.id - a.id);
  replaceChildren(
    $("inbox"),
    items.map((n) =>
      el(
        "li",
        { class: `notification ${n.isRead ? "read" : "unread"}`, "data-id": n.id, "data-testid": "inbox-item" },
        el(
          "div",
          { class: "grow" },
          el("div", { class: "title" }, n.title),
          el("div", { class: "message" }, n.message),
          el("div", { class: "meta" }, `${n.type.replaceAll("_", " ")} · ${timeAgo(n.createdAt)}`),
        ),
        n.isRead
          ? el("span", { class: "pill" }, "read")
          : el("button", { class: "secondary small", type: "button", "aria-label": `Mark “${n.title}” read`, onclick: () => markRead([n.id]) }, "Mark read"),
      ),
    ),
    "Nothing yet. Notifications appear here as they arrive.",
  );
}

// Through the socket when connected, else over HTTP: either way Herald tells every tab, and
// the client passes on the new unread count.
async function markRead(ids) {
  const { marked } = await state.herald.markRead(ids ?? "all");
  for (const id of marked) if (state.items.has(id)) state.items.get(id).isRead = true;
  renderInbox();
}

// --- friends ----------------------------------------------------------------------------------
async function refreshFriends() {
  const { token, userId } = state.session || {};
  if (!token) return;
  const base = `/api/friend-requests/user/${userId}`;
  const [incoming, sent, friends] = await Promise.all([
    api(`${base}/pending?limit=50`, { token }),
    api(`${base}/sent?status=pending&limit=50`, { token }),
    api(`${base}/friends?limit=100`, { token }),
  ]);
  replaceChildren(
    $("incoming"),
    incoming.items.map((r) =>
      el(
        "li",
        { "data-testid": "incoming-request" },
        el("div", { class: "grow" },
          el("div", { class: "title" }, r.fromUsername),
          el("div", { class: "meta" }, r.message || `sent ${timeAgo(r.createdAt)}`)),
        el("div", { class: "actions" },
          el("button", { class: "small", type: "button", "aria-label": `Accept ${r.fromUsername}`, onclick: () => answer(r.friendRequestId, "accept") }, "Accept"),
          el("button", { class: "danger small", type: "button", "aria-label": `Reject ${r.fromUsername}`, onclick: () => answer(r.friendRequestId, "reject") }, "Reject")),
      ),
    ),
    "No requests waiting.",
  );
  replaceChildren(
    $("sent"),
    sent.items.map((r) =>
      el("li", {},
        el("div", { class: "grow" }, el("div", { class: "title" }, r.toUsername),
          el("div", { class: "meta" }, `sent ${timeAgo(r.createdAt)}`)),
        el("button", { class: "quiet small", type: "button", "aria-label": `Cancel request to ${r.toUsername}`, onclick: () => answer(r.friendRequestId, "cancel") }, "Cancel")),
    ),
    "None.",
  );
  replaceChildren(
    $("friends"),
    friends.items.map((f) =>
      el("li", { "data-testid": "friend" },
        el("div", { class: "grow" }, el("div", { class: "title" }, f.username),
          el("div", { class: "meta" }, `friends since ${timeAgo(f.friendsSince)}`))),
    ),
    "No friends yet: send a request above.",
  );
}

async function answer(id, action) {
  try {
    await api(`/api/friend-requests/${id}/${action}`, { method: "PATCH", token: state.session.token });
  } catch (error) {
    formError($("friend-error"), error);
  }
  await refreshFriends();
}

// --- forms ------------------------------------------------------------------------------------
function onSubmit(form, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = form.querySelector("[data-error]") || $("friend-error");
    const button = form.querySelector("button[type=submit]");
    error.textContent = "";
    button.disabled = true;
    try {
      await handler(new FormData(form));
    } catch (failure) {
      formError(error, failure);
    } finally {
      button.disabled = false;
    }
  });
}

async function logIn(identity, password) {
  const body = identity.includes("@") ? { email: identity, password } : { username: identity, password };
  const login = await api("/api/logins", { method: "POST", body });
  startSession({ token: login.sessionToken, userId: login.userId, username: login.username });
}

onSubmit($("signup-form"), async (data) => {
  await api("/api/signups", {
    method: "POST",
    body: { username: data.get("username"), email: data.get("email"), password: data.get("password") },
  });
  await logIn(data.get("email"), data.get("password"));
});

onSubmit($("login-form"), (data) => logIn(data.get("identity").trim(), data.get("password")));

onSubmit($("friend-form"), async (data) => {
  const message = data.get("message").trim();
  await api("/api/friend-requests", {
    method: "POST",
    token: state.session.token,
    body: { toUsername: data.get("username").trim(), ...(message ? { message } : {}) },
  });
  $("friend-form").reset();
  await refreshFriends();
});

onSubmit($("purchase-form"), async (data) => {
  $("purchase-result").textContent = "";
  const purchase = await api("/api/purchases", {
    method: "POST",
    token: state.session.token,
    body: {
      items: [{
        name: data.get("item"),
        quantity: Number(data.get("quantity")),
        unitAmount: Math.round(Number(data.get("price")) * 100),
      }],
      currency: "USD",
    },
  });
  const total = (purchase.totalAmount / 100).toFixed(2);
  $("purchase-result").textContent = `Order ${purchase.orderReference}: $${total}. Receipt on its way.`;
});

$("logout").addEventListener("click", logout);
$("read-all").addEventListener("click", () => markRead(null));
$("inbox-button").addEventListener("click", () => $("inbox-card").scrollIntoView({ behavior: "smooth" }));

// For the browser console (and the browser tests): the Herald client and its socket.
window.heraldDemo = {
  get client() { return state.herald; },
  get socket() { return state.herald?.socket; },
};

const saved = loadSession();
if (saved) enter(saved);
