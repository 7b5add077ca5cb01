// The dashboard's template editor: /api/templates. Open a type and locale (the stored template,
// or the built-in it falls back to), edit, preview with sample data, save or delete. A refused
// save shows the part and the line the server named.
import { el } from "/static/js/common.js";

const $ = (id) => document.getElementById(id);
const path = (type, locale) => `/api/templates/${encodeURIComponent(type)}/${encodeURIComponent(locale)}`;

export function initTemplates(call) {
  const state = { types: [], defaultLocale: "en", loads: 0 };

  const current = () => ({ type: $("tpl-type").value.trim(), locale: $("tpl-locale").value.trim() });
  const draft = () => ({ subject: $("tpl-subject").value, text: $("tpl-text").value, html: $("tpl-html").value });

  function showError(error) {
    const details = error?.body?.error?.details;
    if (Array.isArray(details) && details.length) {
      $("tpl-error").textContent = details
        .map((d) => `${d.field || d.loc?.slice(-1)[0]}${d.line ? ` (line ${d.line})` : ""}: ${d.message || d.msg}`)
        .join("; ");
    } else {
      $("tpl-error").textContent = error?.message || String(error);
    }
  }

  async function refreshList() {
    const list = await call("/api/templates");
    state.types = list.types;
    state.defaultLocale = list.defaultLocale;
    if (!$("tpl-locale").value) $("tpl-locale").value = list.defaultLocale;
    $("tpl-types").replaceChildren(...list.types.map((t) =>
      el("option", { value: t.type }, t.builtIn ? `${t.type} (built-in)` : t.type)));
    showStored();
  }

  function showStored() {
    const { type } = current();
    const found = state.types.find((t) => t.type === type);
    const locales = found ? found.locales.map((l) => l.locale) : [];
    $("tpl-stored").replaceChildren(
      locales.length ? "Stored for: " : "Nothing stored for this type: every locale gets the built-in.",
      ...locales.flatMap((locale, i) => [i ? ", " : "",
        el("button", { type: "button", class: "quiet small", "data-locale": locale,
          onclick: () => { $("tpl-locale").value = locale; load(); } }, locale)]),
    );
    $("tpl-variables").textContent = found || type
      ? `Variables: ${(found?.variables || ["username", "title", "message", "data"]).join(", ")}` : "";
  }

  async function load() {
    const { type, locale } = current();
    $("tpl-error").textContent = "";
    if (!type || !locale) {
      $("tpl-error").textContent = "Give a type and a locale.";
      return;
    }
    const mine = ++state.loads; // a slower, older load must not overwrite a newer one
    try {
      const t = await call(path(type, locale));
      if (mine !== state.loads) return;
      $("tpl-subject").value = t.subject;
      $("tpl-text").value = t.text;
      $("tpl-html").value = t.html;
      $("tpl-locale").value = t.locale;
      $("tpl-status").textContent = t.source === "stored"
        ? `Stored: ${t.type} / ${t.locale}, updated ${new Date(t.updatedAt).toLocaleString()} by ${t.updatedBy || "?"}`
        : `Built-in: nothing is stored for ${t.type} / ${t.locale}`;
      $("tpl-status").dataset.source = t.source;
      showStored();
    } catch (error) {
      showError(error);
    }
  }

  async function preview() {
    const { type, locale } = current();
    $("tpl-error").textContent = "";
    let data;
    try {
      data = JSON.parse($("tpl-data").value || "{}");
    } catch (error) {
      $("tpl-error").textContent = `Sample data is not JSON: ${error.message}`;
      return;
    }
    try {
      const p = await call(`${path(type, locale)}/preview`, { method: "POST", body: { ...draft(), data } });
      $("tpl-preview-subject").textContent = p.subject;
      $("tpl-preview-text").textContent = p.text;
      $("tpl-preview-html").srcdoc = p.html; // a sandboxed frame: no script runs in it
      $("tpl-result").hidden = false;
    } catch (error) {
      showError(error);
    }
  }

  async function save(event) {
    event.preventDefault();
    const { type, locale } = current();
    $("tpl-error").textContent = "";
    try {
      await call(path(type, locale), { method: "PUT", body: draft() });
    } catch (error) {
      showError(error);
      return;
    }
    await refreshList();
    await load();
  }

  async function remove() {
    const { type, locale } = current();
    $("tpl-error").textContent = "";
    try {
      await call(path(type, locale), { method: "DELETE" });
    } catch (error) {
      showError(error);
      return;
    }
    await refreshList();
    await load();
  }

  $("tpl-open").addEventListener("click", load);
  $("tpl-preview").addEventListener("click", preview);
  $("tpl-delete").addEventListener("click", remove);
  $("tpl-form").addEventListener("submit", save);
  $("tpl-type").addEventListener("change", showStored);
  // Open on the first type, unless someone already chose one.
  refreshList()
    .then(() => {
      if (!$("tpl-type").value && state.types.length) {
        $("tpl-type").value = state.types[0].type;
        return load();
      }
    })
    .catch(showError);
}
