// The operations dashboard: the /admin Socket.IO namespace for live data, the ops REST API for
// the rest (dead letters, mailbox, the per-minute summary).
import { io } from "/static/vendor/socket.io.esm.min.js";
import { ApiError, api, el, formError, formatMs, formatRate, timeAgo, toast } from "/static/js/common.js";
import { initTemplates } from "/static/js/templates.js";

const TOKEN_KEY = "herald.admin";
const HISTORY = 60; // seconds on the chart
const POLL_MS = 2500;
const $ = (id) => document.getElementById(id);

const state = { token: null, socket: null, channel: "email", history: [], stages: [], poller: null };

// --- token ------------------------------------------------------------------------------------
$("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = new FormData(event.target).get("token").trim();
  const error = event.target.querySelector("[data-error]");
  error.textContent = "";
  try {
    await api("/api/ops/queues", { token });
  } catch (failure) {
    formError(error, failure.status === 403 ? new Error("That is not the admin token.") : failure);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  open(token);
});

$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

function open(token) {
  state.token = token;
  $("token-form").hidden = true;
  $("board").hidden = false;
  $("forget").hidden = false;
  connect();
  poll();
  state.poller = setInterval(poll, POLL_MS);
  window.addEventListener("resize", drawChart);
  initTemplates(call);
}

const call = (path, options = {}) => api(path, { ...options, token: state.token });

// --- live namespace ---------------------------------------------------------------------------
function setConnection(kind, text) {
  $("conn").dataset.state = kind;
  $("conn-text").textContent = text;
}

function connect() {
  const socket = io("/admin", { auth: { token: state.token }, transports: ["websocket", "polling"] });
  state.socket = socket;
  setConnection("connecting", "Connecting…");
  socket.on("connect", () => setConnection("online", "Live"));
  socket.on("disconnect", () => setConnection("reconnecting", "Reconnecting…"));
  socket.on("connect_error", (error) => setConnection("offline", `Live view refused: ${error.message}`));
  socket.on("telemetry:aggregate", onAggregate);
  socket.on("telemetry:stage", onStage);
}

function onAggregate(a) {
  state.history.push(a);
  if (state.history.length > HISTORY) state.history.shift();
  const web = a.components.api;
  $("t-api-rps").textContent = web ? web.perSecond.toFixed(0) : "0";
  $("t-api-lat").textContent = `p95 ${formatMs(web?.p95Ms)}`;
  const email = a.components["channel:email"];
  const inapp = a.components["channel:inapp"];
  const ok = (c) => (c ? c.count - c.errors : 0);
  $("t-deliveries").textContent = String(ok(email) + ok(inapp));
  $("t-deliveries-sub").textContent = `email ${ok(email)} · in-app ${ok(inapp)}`;
  renderQueues(a.queues);
  renderServers(a.connections);
  drawChart();
}

function onStage(event) {
  state.stages.unshift(event);
  state.stages.length = Math.min(state.stages.length, 60);
  const list = $("stages");
  const time = new Date(event.timestamp).toLocaleTimeString([], { hour12: false });
  const what = [event.channel, event.notificationId].filter(Boolean).join(" #");
  const outcome = event.detail?.outcome || event.detail?.queue || event.detail?.route || "";
  list.prepend(
    el("li", {},
      el("span", { class: "mono" }, time),
      el("span", {}, el("span", { class: `pill ${stageClass(event)}` }, event.stage.replace("_", " "))),
      el("span", {},
        el("button", { type: "button", title: "Show the timeline", onclick: () => showTimeline(event.telemetryId) }, event.telemetryId),
        " ", el("span", { class: "hint" }, [what, outcome].filter(Boolean).join(" · ")),
        " ", recordButton(event)),
    ),
  );
  while (list.children.length > 60) list.lastElementChild.remove();
}

function stageClass(event) {
  if (event.detail?.outcome === "failed" || event.detail?.outcome === "deferred") return "bad";
  if (event.stage === "channel" || event.stage === "ack") return "ok";
  return "";
}

// --- polling: dead letters, mailbox, summary -------------------------------------------------
async function poll() {
  try {
    await Promise.all([refreshDeadLetters(), refreshMailbox(), refreshSummary(), refreshAlerts()]);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    }
    console.error(error);
  }
}

async function refreshSummary() {
  const s = await call("/api/ops/metrics");
  $("t-email-rate").textContent = formatRate(s.components["channel:email"]?.successRate);
  $("t-inapp-rate").textContent = formatRate(s.components["channel:inapp"]?.successRate);
  $("t-sockets").textContent = String(s.connections.sockets);
  $("t-users").textContent = `${s.connections.onlineUsers} users`;
  $("components").replaceChildren(
    ...Object.entries(s.components).map(([name, c]) =>
      el("tr", {},
        el("td", {}, name),
        el("td", { class: "num" }, c.perSecond.toFixed(2)),
        el("td", { class: "num" }, formatMs(c.p50Ms)),
        el("td", { class: "num" }, formatMs(c.p95Ms)),
        el("td", { class: "num" }, formatMs(c.p99Ms)),
        el("td", { class: "num" }, el("span", { class: `pill ${rateClass(c.successRate)}` }, formatRate(c.successRate)))),
    ),
  );
  if (!Object.keys(s.components).length) $("components").replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No traffic in the last minute.")));
  $("processes").replaceChildren(
    ...s.processes.map((p) =>
      el("li", {}, el("span", { class: "mono" }, p.serverId),
        el("span", { class: "meta" }, [p.roles.api && "api", p.roles.workers && "workers"].filter(Boolean).join(" + "))),
    ),
  );
  state.connectionRates = s.connectionRates;
  renderEscalations(s.escalations);
  renderConnectionRates(s.connectionRates);
  if (!state.socket?.connected) {
    renderQueues(s.queues);
    renderServers(s.connections);
  }
}

// --- monitoring: alerts, escalations, connection analytics ------------------------------------
async function refreshAlerts() {
  const { alerts } = await call("/api/ops/alerts");
  const banner = $("alerts");
  banner.hidden = !alerts.length;
  banner.replaceChildren(...alerts.map((a) =>
    el("div", { class: `alert ${a.severity}`, "data-alert": a.alert },
      a.message, el("span", { class: "meta" }, a.alert))));
}

function renderEscalations(escalations) {
  $("tiers").replaceChildren(...escalations.tiers.map((t) =>
    el("tr", { "data-queue": t.queue },
      el("td", { class: "mono" }, t.queue),
      el("td", { class: "num" }, t.inflowPerMinute),
      el("td", { class: "num" }, t.current))));
  $("moves").replaceChildren(...escalations.perMinute.map((m) =>
    el("li", {}, el("span", { class: "mono" }, `${m.fromQueue} → ${m.toQueue}`),
      el("span", { class: "meta" }, `${m.perMinute}/min`))));
  if (!escalations.perMinute.length) $("moves").replaceChildren(el("li", { class: "empty" }, "No escalations in the last minute."));
}

const rates = (r) => (r ? `${r.perMinute.connects} · ${r.perMinute.disconnects} · ${r.perMinute.reconnections}` : "–");

function renderConnectionRates(connectionRates) {
  $("conn-rates").textContent = `cluster /min: ${rates(connectionRates.cluster)} (connects · disconnects · reconnections)`;
}

function rateClass(rate) {
  if (rate === null || rate === undefined) return "";
  return rate >= 0.99 ? "ok" : rate >= 0.9 ? "warn" : "bad";
}

function renderQueues(queues) {
  const rows = [];
  for (const [label, prefix] of [["Email", "mail"], ["In-app", "inapp"]]) {
    rows.push(el("tr", { class: "group" }, el("td", { colspan: 6 }, label)));
    for (const [name, c] of Object.entries(queues).filter(([n]) => n === prefix || n.startsWith(`${prefix}-`))) {
      rows.push(
        el("tr", { "data-queue": name, class: c.overdue ? "problem" : null },
          el("td", { class: "mono" }, name),
          ...["waiting", "active"].map((k) => el("td", { class: "num" }, c[k])),
          // A delayed job long past its due time means no worker promotes this queue's jobs.
          el("td", { class: "num" }, c.delayed,
            c.overdue ? el("span", { class: "pill bad", title: "delayed jobs past their due time" }, ` ${c.overdue} overdue`) : null),
          ...["completed", "failed"].map((k) => el("td", { class: "num" }, c[k]))),
      );
    }
  }
  $("queues").replaceChildren(...rows);
}

function renderServers(connections) {
  $("servers").replaceChildren(
    ...connections.servers.map((s) =>
      el("tr", {},
        el("td", { class: "mono" }, s.serverId),
        el("td", {}, el("span", { class: `pill ${s.alive ? "ok" : "bad"}` }, s.alive ? "alive" : "gone")),
        el("td", { class: "num" }, s.sockets),
        el("td", { class: "num" }, s.users),
        el("td", { class: "num" }, rates(state.connectionRates?.servers.find((r) => r.serverId === s.serverId)))),
    ),
  );
  if (!connections.servers.length) $("servers").replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No API server has reported yet.")));
}

// --- dead letters -------------------------------------------------------------------------------
for (const tab of document.querySelectorAll("[role=tab]")) {
  tab.addEventListener("click", () => {
    state.channel = tab.dataset.channel;
    for (const t of document.querySelectorAll("[role=tab]")) t.setAttribute("aria-selected", String(t === tab));
    refreshDeadLetters();
  });
}

async function refreshDeadLetters() {
  const [email, inapp] = await Promise.all([
    call("/api/ops/dlq/email?limit=50"),
    call("/api/ops/dlq/inapp?limit=50"),
  ]);
  $("dlq-email-count").textContent = String(email.total);
  $("dlq-inapp-count").textContent = String(inapp.total);
  $("t-dead").textContent = String(email.total + inapp.total);
  $("t-dead-sub").textContent = `email ${email.total} · in-app ${inapp.total}`;
  const page = state.channel === "email" ? email : inapp;
  const channel = state.channel;
  $("dlq").replaceChildren(
    ...page.items.map((d) =>
      el("tr", { "data-testid": "dead-letter", "data-id": d.notificationId },
        el("td", { class: "num" }, d.notificationId),
        el("td", {}, d.type),
        el("td", {}, d.recipient || "–"),
        el("td", { class: "num" }, d.attempts),
        el("td", {}, timeAgo(d.failedAt)),
        el("td", { class: "wrap" }, d.failureReason || ""),
        el("td", {},
          el("div", { class: "actions row" },
            el("button", { class: "quiet small", type: "button", "aria-label": `Inspect ${channel} ${d.notificationId}`, onclick: () => inspect(channel, d.notificationId) }, "Inspect"),
            el("button", { class: "small", type: "button", "aria-label": `Replay ${channel} ${d.notificationId}`, onclick: () => replay(channel, [d.notificationId]) }, "Replay"),
            el("button", { class: "danger small", type: "button", "aria-label": `Discard ${channel} ${d.notificationId}`, onclick: () => discard(channel, d.notificationId) }, "Discard"))),
      ),
    ),
  );
  if (!page.items.length) $("dlq").replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No dead letters. Everything was delivered or is still on its way.")));
}

async function replay(channel, ids) {
  $("dlq-error").textContent = "";
  try {
    const result = await call(`/api/ops/dlq/${channel}/replay`, { method: "POST", body: ids ? { ids } : { all: true } });
    toast($("toasts"), { title: `Replayed ${result.count}`, message: "Back to the first tier.", ms: 3000 });
  } catch (error) {
    formError($("dlq-error"), error);
  }
  await refreshDeadLetters();
}

$("replay-all").addEventListener("click", () => replay(state.channel, null));

function discard(channel, id) {
  const reason = el("input", { id: "discard-reason", required: true, maxlength: 500, value: "" });
  const form = el("form", { class: "stack" },
    el("div", { class: "field" }, el("label", { for: "discard-reason" }, "Why discard it?"), reason),
    el("div", { class: "row" }, el("button", { class: "danger", type: "submit" }, "Discard")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await call(`/api/ops/dlq/${channel}/discard`, { method: "POST", body: { ids: [id], reason: reason.value } });
    $("dialog").close();
    await refreshDeadLetters();
  });
  showDialog(`Discard ${channel} #${id}`, form);
  reason.focus();
}

async function inspect(channel, id) {
  try {
    const n = await call(`/api/notifications/${channel}/${id}`);
    showDialog(`${channel} #${id} · ${n.type} · ${n.status}`, recordView(channel, n));
  } catch (error) {
    showDialog(`${channel} #${id}`, el("p", { class: "error" }, error.message));
  }
}

// One notification, whole: GET /api/notifications/{channel}/{id}.
function recordView(channel, n) {
  const meta = n.metadata;
  const history = el("table", {},
    el("thead", {}, el("tr", {}, ...["#", "When", "Queue", "Status", "Error"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ...meta.deliveryHistory.map((a) =>
      el("tr", {}, el("td", {}, a.attempt), el("td", {}, new Date(a.timestamp).toLocaleTimeString()),
        el("td", { class: "mono" }, a.queueName), el("td", {}, a.status), el("td", { class: "wrap" }, a.error || "")))));
  const escalations = el("ul", { class: "list" }, ...meta.escalationHistory.map((e) =>
    el("li", {}, el("span", {}, `${e.fromQueue} → ${e.toQueue}`), el("span", { class: "meta" }, e.reason))));
  const r = n.recipient;
  const facts = [
    ["Recipient", [r.username, r.email, r.userId && `user ${r.userId}`].filter(Boolean).join(" · ")],
    [channel === "email" ? "Subject" : "Title", channel === "email" ? n.subject : n.title],
    ["Queue", `${n.queueName || "–"} · attempt ${n.attempts} of ${n.maxAttempts}`],
    ["Created", new Date(n.createdAt).toLocaleString()],
    ["Updated", new Date(n.updatedAt).toLocaleString()],
    n.deliveredAt && ["Delivered", new Date(n.deliveredAt).toLocaleString()],
    n.failureReason && ["Failure", n.failureReason],
  ].filter(Boolean);
  const dead = n.status === "failed" && !n.discardedAt;
  return el("div", { "data-testid": "record" },
    el("dl", { class: "facts" }, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    el("h3", {}, channel === "email" ? "Content (text)" : "Message"),
    el("pre", {}, channel === "email" ? n.content.text : n.message),
    el("h3", {}, "Attempts"), el("div", { class: "table-wrap" }, history),
    el("h3", {}, "Escalations"), escalations,
    el("div", { class: "row", style: "margin-top: 1rem" },
      dead && el("button", { type: "button", onclick: () => { $("dialog").close(); replay(channel, [n.id]); } }, "Replay"),
      el("button", { class: "secondary", type: "button", onclick: () => showNotificationTimeline(channel, n.id) }, "Stage timeline")));
}

function recordButton(stage) {
  if (!stage.channel || !stage.notificationId) return null;
  const label = `Record of ${stage.channel} ${stage.notificationId}`;
  return el("button", { class: "quiet small", type: "button", "aria-label": label, onclick: () => inspect(stage.channel, stage.notificationId) }, "Record");
}

// --- timelines ------------------------------------------------------------------------------------
function timelineView(t) {
  return el("ol", { class: "events" }, ...t.stages.map((s) =>
    el("li", {},
      el("span", { class: "mono" }, `+${s.offsetMs.toFixed(1)} ms`),
      el("span", {}, el("span", { class: `pill ${stageClass(s)}` }, s.stage.replace("_", " "))),
      el("span", { class: "hint" }, [s.component, s.serverId, s.channel && `${s.channel} #${s.notificationId}`,
        s.detail.outcome, s.detail.queue, s.detail.error].filter(Boolean).join(" · "), " ", recordButton(s)))));
}

async function showTimeline(id) {
  try {
    showDialog(`Timeline ${id}`, timelineView(await call(`/api/ops/telemetry/${encodeURIComponent(id)}`)));
  } catch (error) {
    showDialog(`Timeline ${id}`, el("p", { class: "error" }, error.message));
  }
}

async function showNotificationTimeline(channel, id) {
  try {
    showDialog(`Timeline of ${channel} #${id}`, timelineView(await call(`/api/ops/telemetry/notification/${channel}/${id}`)));
  } catch (error) {
    showDialog(`Timeline of ${channel} #${id}`, el("p", { class: "error" }, error.message));
  }
}

// --- mailbox -------------------------------------------------------------------------------------
async function refreshMailbox() {
  let box;
  try {
    box = await call("/api/ops/mailbox?limit=8");
  } catch (error) {
    if (error.code !== "mailbox_disabled") throw error;
    $("mailbox-total").textContent = "";
    $("mailbox").replaceChildren(el("li", { class: "empty" }, "The capture mailbox is off: mail goes to the SMTP server in EMAIL_HOST."));
    return;
  }
  $("mailbox-total").textContent = `${box.total} captured`;
  $("mailbox").replaceChildren(...box.messages.map((m) =>
    el("li", {},
      el("div", { class: "grow" }, el("div", { class: "title" }, m.subject || "(no subject)"),
        el("div", { class: "meta" }, `to ${m.to.join(", ")} · ${timeAgo(m.receivedAt)}`)),
      el("button", { class: "quiet small", type: "button", onclick: () => showMessage(m.id) }, "Open"))));
  if (!box.messages.length) $("mailbox").replaceChildren(el("li", { class: "empty" }, "Nothing captured yet."));
}

async function showMessage(id) {
  const m = await call(`/api/ops/mailbox/${encodeURIComponent(id)}`);
  showDialog(m.subject || "(no subject)", el("div", {},
    el("p", { class: "hint" }, `From ${m.from} to ${m.to.join(", ")}`), el("pre", {}, m.text || "")));
}

// --- dialog ------------------------------------------------------------------------------------
function showDialog(title, content) {
  $("dialog-title").textContent = title;
  $("dialog-content").replaceChildren(content);
  if (!$("dialog").open) $("dialog").showModal();
}
$("dialog-close").addEventListener("click", () => $("dialog").close());

// --- chart -------------------------------------------------------------------------------------
function series() {
  const pick = (a, name, f) => (a.components[name] ? f(a.components[name]) : 0);
  return state.history.map((a) => ({
    api: pick(a, "api", (c) => c.count),
    delivered: pick(a, "channel:email", (c) => c.count - c.errors) + pick(a, "channel:inapp", (c) => c.count - c.errors),
    failed: pick(a, "channel:email", (c) => c.errors) + pick(a, "channel:inapp", (c) => c.errors),
    p95: a.components.api?.p95Ms ?? null,
  }));
}

function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (!width) return;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const pad = { left: 36, right: 44, top: 8, bottom: 18 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const points = series();
  const maxRate = niceMax(Math.max(1, ...points.flatMap((p) => [p.api, p.delivered, p.failed])));
  const maxMs = niceMax(Math.max(1, ...points.map((p) => p.p95 ?? 0)));
  g.font = "11px system-ui, sans-serif";
  g.strokeStyle = "#e2e6eb";
  g.fillStyle = "#5b6675";
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + (h * i) / 4;
    g.beginPath();
    g.moveTo(pad.left, y);
    g.lineTo(pad.left + w, y);
    g.stroke();
    g.textAlign = "right";
    g.fillText(String(Math.round(maxRate * (1 - i / 4))), pad.left - 6, y + 4);
    g.textAlign = "left";
    g.fillText(`${Math.round(maxMs * (1 - i / 4))}`, pad.left + w + 6, y + 4);
  }
  g.textAlign = "left";
  g.fillText("−60 s", pad.left, height - 4);
  g.textAlign = "right";
  g.fillText("now", pad.left + w, height - 4);
  const x = (i) => pad.left + w - ((points.length - 1 - i) * w) / (HISTORY - 1);
  const line = (color, value, max) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    let started = false;
    points.forEach((p, i) => {
      const v = value(p);
      if (v === null) return;
      const y = pad.top + h - (v / max) * h;
      if (started) g.lineTo(x(i), y);
      else g.moveTo(x(i), y);
      started = true;
    });
    g.stroke();
  };
  line("#2f5bea", (p) => p.api, maxRate);
  line("#1f8a4c", (p) => p.delivered, maxRate);
  line("#c2352b", (p) => p.failed, maxRate);
  line("#b26a00", (p) => p.p95, maxMs);
}

function niceMax(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) open(saved);
