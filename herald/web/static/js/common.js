// What both pages share: calling Herald's REST API, building DOM safely, toasts, formatting.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.body = body;
  }
}

// fetch() with JSON in and out, a bearer token, and Herald's error shape turned into ApiError.
export async function api(path, { method = "GET", body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// el("li", {class: "x", onclick: f}, "text", child): text is always text, never HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function replaceChildren(node, children, emptyText) {
  node.replaceChildren(...(children.length ? children : [el("li", { class: "empty" }, emptyText)]));
}

// A toast that leaves by itself after `ms` (or when closed). The container is an aria-live
// region, so screen readers announce it too.
export function toast(container, { title, message, kind = "notification", ms = 7000 }) {
  const close = () => node.remove();
  const node = el(
    "div",
    { class: `toast ${kind}`, role: "status", "data-testid": "toast", "data-kind": kind },
    el("div", { class: "toast-title" }, title),
    el("button", { type: "button", "aria-label": "Dismiss", onclick: close }, "×"),
    message ? el("div", { class: "toast-message" }, message) : null,
  );
  container.prepend(node);
  while (container.children.length > 3) container.lastElementChild.remove();
  setTimeout(close, ms);
  return node;
}

export function timeAgo(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export function formatMs(value) {
  if (value === null || value === undefined) return "–";
  return value < 10 ? `${value.toFixed(2)} ms` : `${Math.round(value)} ms`;
}

export function formatRate(value) {
  if (value === null || value === undefined) return "–";
  return `${(value * 100).toFixed(value === 1 ? 0 : 1)}%`;
}

export function formError(node, error) {
  const details = error?.body?.error?.details;
  const fields = Array.isArray(details)
    ? details.map((d) => `${d.field || d.loc?.slice(-1)[0] || ""}: ${d.message || d.msg}`).join("; ")
    : "";
  node.textContent = fields || error.message || String(error);
}
