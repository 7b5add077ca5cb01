// Herald's headless client: a subscriber's live in-app inbox, for browsers and Node.
//
//   import { createHeraldClient } from "@herald/client";
//   const herald = createHeraldClient({ url: "https://herald.example.com", token });
//   herald.on("notification", (n) => show(n));            // live, and caught up on (re)connect
//   herald.on("unreadCount", (count) => badge(count));    // kept in step across tabs
//   const page = await herald.inbox({ limit: 20 });
//   await herald.markRead([page.items[0].id]);
//
// `token` is what the application's backend signed for its user (a JWT, HS256, `sub` = their
// id), or a Herald session token; a function returning one (or a promise of one) is called on
// every connect and request, so a short-lived token can be renewed.
//
// The client acknowledges every notification it receives (`notification:ack`: Herald counts
// an in-app notification delivered only then) and hands each id to the application once,
// even when a retry or a catch-up brings it again.
import { io } from "socket.io-client";

const SEEN_LIMIT = 2000; // ids remembered to drop repeats; Herald repeats only recent ones

export class HeraldError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.name = "HeraldError";
    this.status = status;
    this.code = body?.error?.code;
    this.details = body?.error?.details;
    this.body = body;
  }
}

export function createHeraldClient(options) {
  return new HeraldClient(options);
}

export class HeraldClient {
  #url;
  #token;
  #fetch;
  #socketOptions;
  #listeners = new Map();
  #seen = new Set();
  #unread = null;
  // Counts come from requests and from events, and a request's answer may arrive after a newer
  // count: each count is numbered when it is asked for (or heard), and an older one is dropped.
  #countAsked = 0;
  #countShown = 0;
  #signIns = 0;
  #countTimer = null;
  #ready;
  #resolveReady;

  constructor({
    url,
    token,
    fetch: fetchImpl = globalThis.fetch?.bind(globalThis),
    reconnectionAttempts = Infinity,
    reconnectionDelay = 500,
    reconnectionDelayMax = 5000,
    transports = ["websocket", "polling"],
    socketOptions = {},
    autoConnect = true,
  } = {}) {
    if (!token) throw new TypeError("createHeraldClient needs a token");
    this.#url = (url ?? (typeof location !== "undefined" ? location.origin : "")).replace(/\/+$/, "");
    this.#token = token;
    this.#fetch = fetchImpl;
    this.#socketOptions = {
      transports,
      reconnectionAttempts,
      reconnectionDelay,
      reconnectionDelayMax,
      ...socketOptions,
    };
    this.reconnects = 0; // sign-ins after the first: each followed a lost connection
    this.socket = null;
    this.#newReady();
    if (autoConnect) this.connect();
  }

  // --- events ------------------------------------------------------------------------------
  // "notification" (each id once), "read" ({ids, all, unreadCount}), "unreadCount" (number),
  // "status" ({state: "connecting" | "online" | "reconnecting" | "offline", ...}),
  // "authError" ({message}), "reconnect" (signed in again: reload what you show).
  on(event, listener) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) {
    this.#listeners.get(event)?.delete(listener);
  }

  #emit(event, value) {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) {
      try {
        listener(value);
      } catch (error) {
        console.error(`herald: a "${event}" listener failed`, error);
      }
    }
  }

  #status(state, details = {}) {
    this.state = state;
    this.#emit("status", { state, reconnects: this.reconnects, ...details });
  }

  // --- the connection ----------------------------------------------------------------------
  /** Resolves with `auth:success`'s {userId, socketId, serverId} once signed in. */
  get ready() {
    return this.#ready;
  }

  get connected() {
    return Boolean(this.socket?.connected && this.state === "online");
  }

  /** The last unread count Herald reported (null until the first one). */
  get unreadCount() {
    return this.#unread;
  }

  /** Opens the socket; after `close()` or when reconnection gave up, opens it again. */
  connect() {
    if (this.socket) {
      if (!this.socket.connected) {
        this.#status("connecting");
        this.socket.connect();
      }
      return this;
    }
    const socket = io(this.#url || undefined, {
      ...this.#socketOptions,
      // Called on every (re)connect: a token function can hand a fresh token each time.
      auth: (send) =>
        this.#currentToken().then(
          (token) => send({ token }),
          (error) => {
            this.#emit("authError", { message: `no token: ${error?.message ?? error}` });
            send({});
          },
        ),
    });
    this.socket = socket;
    this.#status("connecting");
    socket.on("connect", () => {
      if (this.state !== "online") this.#status("connecting", { signingIn: true });
    });
    socket.on("auth:success", (info) => this.#signedIn(info));
    socket.on("auth:error", (error) => {
      // Refused (or its session ended): an unauthenticated socket receives nothing, so close
      // it; connect() tries again, with setToken's token or the token function's next one.
      socket.disconnect();
      this.#status("offline", { authError: error?.message });
      this.#emit("authError", error ?? {});
    });
    socket.on("disconnect", (reason) => {
      if (reason === "io client disconnect") {
        this.#status("offline", { reason });
      } else if (reason === "io server disconnect") {
        // Herald ended the session: the token expired (or the session was revoked), and
        // Socket.IO does not reconnect by itself after that. A token function gives a fresh
        // token, so connect again; a fixed token needs the application (setToken, connect).
        if (typeof this.#token === "function") {
          this.#status("reconnecting", { reason });
          setTimeout(() => socket.connect(), this.#socketOptions.reconnectionDelay);
        } else {
          this.#status("offline", { reason });
          this.#emit("authError", { message: "Herald ended the session: a new token is needed" });
        }
      } else {
        this.#status("reconnecting", { reason });
      }
    });
    socket.io.on("reconnect_attempt", (attempt) => this.#status("reconnecting", { attempt }));
    socket.io.on("reconnect_failed", () =>
      this.#status("offline", { gaveUp: true, attempts: this.#socketOptions.reconnectionAttempts }),
    );
    socket.on("notification:new", (n) => this.#received(n));
    socket.on("notifications:markedRead", (read) => {
      this.#setUnread(read.unreadCount, ++this.#countAsked);
      this.#emit("read", read);
    });
    socket.on("notification:broadcast", (b) => this.#emit("broadcast", b));
    return this;
  }

  /** A new token (or token function) for the next connect and every request from now. */
  setToken(token) {
    if (!token) throw new TypeError("setToken needs a token");
    this.#token = token;
    return this;
  }

  close() {
    clearTimeout(this.#countTimer);
    this.socket?.disconnect();
  }

  #newReady() {
    this.#ready = new Promise((resolve) => (this.#resolveReady = resolve));
  }

  #signedIn(info) {
    if (this.#signIns++ > 0) {
      this.reconnects += 1;
      // Reads made elsewhere while this one was away reached nobody here: ask again.
      this.refreshUnreadCount().catch(() => {});
      this.#emit("reconnect", info);
    } else if (this.#unread === null) {
      this.refreshUnreadCount().catch(() => {});
    }
    this.#status("online", { ...info });
    this.#resolveReady(info);
  }

  #received(n) {
    // Acknowledge every copy: the server counts it delivered only then. Show it once.
    this.socket.emit("notification:ack", { ids: [n.id] });
    if (this.#seen.has(n.id)) return;
    this.#seen.add(n.id);
    if (this.#seen.size > SEEN_LIMIT) this.#seen.delete(this.#seen.values().next().value);
    this.#emit("notification", n);
    // Herald's count, not one kept here: a catch-up may bring notifications the last count
    // already held. One request after a burst.
    if (!n.isRead) this.#refreshSoon();
  }

  #refreshSoon() {
    clearTimeout(this.#countTimer);
    this.#countTimer = setTimeout(() => this.refreshUnreadCount().catch(() => {}), 50);
  }

  /** Shows `count`, unless a count asked for (or heard) after it, number `asked`, is shown. */
  #setUnread(count, asked) {
    if (typeof count !== "number" || asked < this.#countShown) return;
    this.#countShown = asked;
    this.#unread = Math.max(0, count);
    this.#emit("unreadCount", this.#unread);
  }

  // --- the inbox over HTTP -----------------------------------------------------------------
  /** A page of the inbox, newest first: {items, page, limit, total, pages}. */
  async inbox({ unread = false, page, limit } = {}) {
    const query = new URLSearchParams();
    if (unread) query.set("unread", "true");
    if (page) query.set("page", String(page));
    if (limit) query.set("limit", String(limit));
    const suffix = query.toString() ? `?${query}` : "";
    return this.#request("GET", `/api/me/notifications${suffix}`);
  }

  /** Asks Herald for the unread count (and tells "unreadCount" listeners). */
  async refreshUnreadCount() {
    const asked = ++this.#countAsked;
    const { unreadCount } = await this.#request("GET", "/api/me/notifications/unread-count");
    this.#setUnread(unreadCount, asked);
    return unreadCount;
  }

  /** Marks ids (or everything, with "all") read, for every tab of this subscriber: over the
   * socket when it is live, else over HTTP. Resolves with {marked: [ids]}. */
  async markRead(ids) {
    const all = ids === "all" || ids === undefined;
    if (!all && !Array.isArray(ids)) ids = [ids];
    if (this.connected) {
      const answer = await this.socket.timeout(10_000).emitWithAck("notification:markRead", all ? "all" : { ids });
      if (answer?.error) throw new HeraldError(400, { error: { code: "refused", message: answer.error } });
      return { marked: answer.marked };
    }
    if (all) {
      const asked = ++this.#countAsked;
      const result = await this.#request("POST", "/api/me/notifications/read-all");
      this.#setUnread(result.unreadCount, asked);
      return { marked: result.marked };
    }
    const marked = [];
    for (const id of ids) {
      const asked = ++this.#countAsked;
      const result = await this.#request("POST", `/api/me/notifications/${encodeURIComponent(id)}/read`);
      marked.push(...result.marked);
      this.#setUnread(result.unreadCount, asked);
    }
    return { marked };
  }

  async #currentToken() {
    return typeof this.#token === "function" ? await this.#token() : this.#token;
  }

  async #request(method, path) {
    const token = await this.#currentToken();
    const response = await this.#fetch(`${this.#url}${path}`, {
      method,
      headers: { Accept: "application/json", Authorization: `Bearer ${token}` },
    });
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = text;
    }
    if (!response.ok) throw new HeraldError(response.status, body);
    return body;
  }
}
