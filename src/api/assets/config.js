// The Response Group configuration tool: plain JavaScript over the rgsd API, nothing to build.
//
// Every page reads and writes the API's JSON bodies, which are the configuration file's TOML
// tables as JSON: an editor starts from the object as returned, changes only the keys it shows,
// and sends the whole table back (PUT with If-Match). Refusals are shown as the API words them:
// a 422's problems next to the fields they name, a 403's or 409's reason at the top of the form.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = "";
let me = null; // { user, role }

const KINDS = {
  "workflows": { title: "Workflows", one: "workflow" },
  "queues": { title: "Queues", one: "queue" },
  "agent-groups": { title: "Agent groups", one: "agent group" },
  "hours": { title: "Business hours", one: "business hours" },
  "holiday-sets": { title: "Holiday sets", one: "holiday set" },
};
const DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const ZONES = ["UTC", "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
  "America/Sao_Paulo", "Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Madrid",
  "Africa/Johannesburg", "Asia/Dubai", "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo",
  "Australia/Sydney", "Pacific/Auckland"];
const URI_REASON = "Managers may not change a workflow's URI or kind; ask an administrator.";
const LINE_REASON = "Managers may not change a workflow's line_uri (its trunk number); ask an administrator.";
const SRTP_REASON = "Managers may not change a workflow's media encryption (srtp); ask an administrator.";

class Refused extends Error {
  constructor(message, code, body) { super(message); this.code = code; this.body = body; }
}

async function api(method, path, body, extra) {
  const headers = Object.assign({}, extra || {});
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  let payload;
  if (body instanceof Blob) {
    payload = body;
    headers["Content-Type"] = headers["Content-Type"] || "audio/wav";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const res = await fetch(path, { method, headers, credentials: "same-origin", body: payload });
  if (res.status === 204) return {};
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    if (res.status === 401 && path !== "/api/session") showLogin("Your session has ended: sign in again.");
    throw new Refused(data.error || ("HTTP " + res.status), res.status, data);
  }
  return data;
}

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

/** Creates an element: attributes (on* become listeners), then children (strings or nodes). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== undefined && c !== null) e.append(c);
  return e;
}

let seq = 0;
const uid = (path) => "f" + (++seq) + "-" + String(path).replace(/[^A-Za-z0-9]/g, "_");

/** The error slot of a field: `data-err` holds the field's path in the API's 422 bodies. */
const errorSlot = (path, id) => el("p", { class: "error", "data-err": path, id: id + "-err", role: "alert" });

/** A labelled input; `opts.readonly` (with `opts.reason`) for what the caller may not change. */
function textC(label, path, value, opts) {
  opts = opts || {};
  const id = uid(path);
  const input = el("input", {
    id, name: path, type: opts.type || "text", value: value === undefined ? "" : String(value),
    placeholder: opts.placeholder, list: opts.list, readonly: opts.readonly,
    "aria-describedby": id + "-err" + (opts.reason || opts.hint ? " " + id + "-hint" : ""),
    "data-field": path,
  });
  const hint = opts.reason || opts.hint;
  const node = el("div", { class: opts.wide ? "wide" : undefined },
    el("label", { for: id, text: label }), input,
    hint ? el("p", { class: "hint", id: id + "-hint", text: hint }) : null,
    errorSlot(path, id));
  return { node, input, get: () => input.value.trim() };
}

function selectC(label, path, options, value, opts) {
  opts = opts || {};
  const id = uid(path);
  const select = el("select", { id, name: path, "data-field": path, disabled: opts.disabled,
    "aria-describedby": id + "-err" + (opts.reason ? " " + id + "-hint" : "") });
  const values = options.map((o) => (Array.isArray(o) ? o : [o, o]));
  if (value !== undefined && value !== "" && !values.some(([v]) => v === value)) values.push([value, value]);
  for (const [v, l] of values) select.append(el("option", { value: v, text: l, selected: v === value }));
  if (value === undefined || value === "") select.value = values.length ? values[0][0] : "";
  const node = el("div", { class: opts.wide ? "wide" : undefined },
    el("label", { for: id, text: label }), select,
    opts.reason ? el("p", { class: "hint", id: id + "-hint", text: opts.reason }) : null,
    errorSlot(path, id));
  return { node, input: select, get: () => select.value };
}

function checkC(label, path, value) {
  const id = uid(path);
  const input = el("input", { id, name: path, type: "checkbox", "data-field": path, checked: !!value });
  const node = el("div", {}, el("label", { class: "inline", for: id }, input, label), errorSlot(path, id));
  return { node, input, get: () => input.checked };
}

/**
 * An ordered list: each row made by `make(value, path)` (a component), with buttons to move it
 * up or down and to remove it, and one to add a row (at most `max`).
 */
function listC(title, path, values, make, opts) {
  opts = opts || {};
  const rows = [];
  const box = el("div", { role: "list", "aria-label": title });
  const add = el("button", { type: "button", "data-add": path, text: opts.addLabel || "Add", onclick: () => { push(undefined); focusRow(rows.length - 1); } });
  const fs = el("fieldset", { class: opts.wide === false ? undefined : "wide" }, el("legend", { text: title }), box, add,
    el("p", { class: "error", "data-err": path, role: "alert" }));
  function focusRow(i) { const f = rows[i] && rows[i].row.querySelector("input, select"); if (f) f.focus(); }
  function redraw() {
    box.replaceChildren();
    rows.forEach((r, i) => {
      // A moved row's fields take the path of their new place, so that errors find them.
      const prefix = path + "[" + i + "]";
      if (r.prefix !== prefix) {
        for (const attr of ["data-field", "data-err", "data-add"]) {
          for (const e of r.row.querySelectorAll("[" + attr + "]")) {
            const v = e.getAttribute(attr);
            if (v.startsWith(r.prefix)) e.setAttribute(attr, prefix + v.slice(r.prefix.length));
          }
        }
        r.prefix = prefix;
      }
      r.up.disabled = i === 0;
      r.down.disabled = i === rows.length - 1;
      for (const b of [r.up, r.down, r.remove]) b.setAttribute("aria-label", b.dataset.verb + " " + (opts.item || "item") + " " + (i + 1));
      box.append(r.row);
    });
    add.disabled = opts.max !== undefined && rows.length >= opts.max;
  }
  function push(v) {
    const i = rows.length;
    const c = make(v, path + "[" + i + "]");
    const mk = (verb, text, fn) => { const b = el("button", { type: "button", text, onclick: fn }); b.dataset.verb = verb; return b; };
    const r = { c, prefix: path + "[" + i + "]" };
    r.up = mk("Move up", "↑", () => { const j = rows.indexOf(r); rows.splice(j, 1); rows.splice(j - 1, 0, r); redraw(); r.up.disabled ? r.down.focus() : r.up.focus(); });
    r.down = mk("Move down", "↓", () => { const j = rows.indexOf(r); rows.splice(j, 1); rows.splice(j + 1, 0, r); redraw(); r.down.disabled ? r.up.focus() : r.down.focus(); });
    r.remove = mk("Remove", "Remove", () => { const j = rows.indexOf(r); rows.splice(j, 1); redraw(); (rows.length ? focusRow(Math.min(j, rows.length - 1)) : add.focus()); });
    r.row = el("div", { class: "row", role: "listitem" }, c.node, r.up, r.down, r.remove);
    rows.push(r);
    redraw();
  }
  for (const v of values || []) push(v);
  redraw();
  return {
    node: fs,
    get: () => rows.map((r) => r.c.get()).filter((v) => v !== "" && v !== undefined),
    add: () => { push(undefined); return rows[rows.length - 1].c; },
    rows: () => rows.map((r) => r.c),
  };
}

/** A prompt: none, text to speak (with a spoken preview), or a prompt file (with a play button). */
function promptC(title, path, value, prompts) {
  value = value || {};
  const id = uid(path);
  const mode = value.file !== undefined ? "file" : value.text !== undefined ? "text" : "none";
  const choice = selectC("Kind of prompt", path + ".kind", [["none", "No prompt"], ["text", "Text spoken by the server"], ["file", "Recorded audio file"]], mode);
  const text = textC("Text", path + ".text", value.text, { wide: true });
  const files = prompts.map((p) => [p.file, p.name]);
  const file = selectC("Audio file", path + ".file", files.length ? files : [["", "(no prompt uploaded yet)"]], value.file);
  // Shown once there is something to play.
  const audio = el("audio", { controls: true, preload: "none", hidden: true, "aria-label": title + " playback" });
  const play = el("button", { type: "button", text: "Play", onclick: async () => {
    const name = prompts.find((p) => p.file === file.get());
    if (name) { audio.src = "/api/prompts/" + encodeURIComponent(name.name); audio.hidden = false; } else { status("This file is not an uploaded prompt; it cannot be played here.", true); return; }
    audio.play().catch(() => {});
  } });
  const preview = el("button", { type: "button", text: "Preview speech", onclick: async () => {
    try {
      await api("POST", "/api/prompts", { name: "preview", text: text.get() || " " });
      audio.src = "/api/prompts/preview?t=" + Date.now();
      audio.hidden = false;
      audio.play().catch(() => {});
      status("Preview ready: press play to hear it again.");
    } catch (e) { showErrors(fs, e); }
  } });
  const textBox = el("div", { class: "wide" }, text.node, preview);
  const fileBox = el("div", { class: "wide" }, file.node, play);
  const fs = el("fieldset", { class: "wide", "aria-labelledby": id }, el("legend", { id, text: title }),
    choice.node, textBox, fileBox, audio, el("p", { class: "error", "data-err": path, role: "alert" }));
  const sync = () => { textBox.hidden = choice.get() !== "text"; fileBox.hidden = choice.get() !== "file"; };
  choice.input.addEventListener("change", sync);
  sync();
  return {
    node: fs,
    choice, text, file,
    get: () => {
      if (choice.get() === "text") return text.get() ? { text: text.get() } : undefined;
      if (choice.get() === "file") return file.get() ? { file: file.get() } : undefined;
      return undefined;
    },
  };
}

/** An action: disconnect, another queue, forward, voicemail, or (IVR level 1) a question. */
function actionC(title, path, value, ctx, level) {
  let kind = "none";
  let target = "";
  if (typeof value === "string") kind = value;
  else if (value && typeof value === "object") {
    for (const k of ["queue", "forward", "voicemail", "question"]) if (value[k] !== undefined) { kind = k; target = value[k]; }
  }
  const kinds = [["none", "(none)"], ["disconnect", "Disconnect"], ["queue", "Send to a queue"], ["forward", "Forward to a SIP address or number"], ["voicemail", "Forward to voicemail"]];
  if (level === 1) kinds.push(["question", "Ask another question"]);
  const choice = selectC(title, path, kinds, kind);
  const queue = selectC("Queue", path + ".queue", ctx.queues.map((q) => q.name), kind === "queue" ? target : undefined);
  const uri = textC("SIP address", path + "." + (kind === "voicemail" ? "voicemail" : "forward"), kind === "forward" || kind === "voicemail" ? target : "", { placeholder: "sip:someone@example.com" });
  const question = level === 1 ? questionC(path + ".question", kind === "question" ? target : undefined, ctx, 2) : null;
  const box = el("div", { class: "wide" }, choice.node, queue.node, uri.node, question ? el("div", { class: "level2" }, question.node) : null);
  const sync = () => {
    const k = choice.get();
    queue.node.hidden = k !== "queue";
    uri.node.hidden = k !== "forward" && k !== "voicemail";
    if (question) question.node.hidden = k !== "question";
  };
  choice.input.addEventListener("change", sync);
  sync();
  return {
    node: box, choice, queue, uri, question,
    get: () => {
      const k = choice.get();
      if (k === "none") return undefined;
      if (k === "disconnect") return "disconnect";
      if (k === "queue") return { queue: queue.get() };
      if (k === "question") return { question: question.get() };
      return { [k]: uri.get() };
    },
  };
}

/** An IVR question: its prompt and up to four answers, each a DTMF key, voice words and an action. */
function questionC(path, value, ctx, level) {
  value = value || {};
  const prompt = promptC("Question (level " + level + ")", path + ".prompt", value.prompt, ctx.prompts);
  const invalid = level === 1 ? promptC("When the answer is not valid", path + ".invalid_answer", value.invalid_answer, ctx.prompts) : null;
  const noAnswer = level === 1 ? promptC("When there is no answer", path + ".no_answer", value.no_answer, ctx.prompts) : null;
  const answers = listC("Answers (level " + level + ", at most four)", path + ".answers", value.answers || [], (a, p) => answerC(a || {}, p, ctx, level), { max: 4, addLabel: "Add an answer", item: "level-" + level + " answer" });
  const node = el("div", { class: "wide" }, prompt.node, invalid && invalid.node, noAnswer && noAnswer.node, answers.node);
  return {
    node, prompt, answers,
    get: () => {
      const q = Object.assign({}, value);
      put(q, "prompt", prompt.get());
      if (invalid) put(q, "invalid_answer", invalid.get());
      if (noAnswer) put(q, "no_answer", noAnswer.get());
      put(q, "answers", answers.get());
      return q;
    },
  };
}

function answerC(a, path, ctx, level) {
  const dtmf = selectC("DTMF key", path + ".dtmf", [["", "(none)"], "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"], a.dtmf || "");
  const voice = textC("Voice words (comma-separated)", path + ".voice", (a.voice || []).join(", "));
  const action = actionC("Then", path + ".action", a.action, ctx, level);
  const node = el("div", { class: "grid wide" }, dtmf.node, voice.node, action.node);
  return {
    node, dtmf, voice, action,
    get: () => {
      const out = Object.assign({}, a);
      put(out, "dtmf", dtmf.get());
      put(out, "voice", voice.get().split(",").map((w) => w.trim()).filter(Boolean));
      put(out, "action", action.get());
      return out;
    },
  };
}

/** Sets `key` to `v`, or removes it when `v` is empty (the file's "optional key left out"). */
function put(obj, key, v) {
  if (v === undefined || v === "" || (Array.isArray(v) && v.length === 0)) delete obj[key];
  else obj[key] = v;
}

/** Shows a refusal: each 422 problem next to its field (or the nearest enclosing one). */
function showErrors(scope, e) {
  for (const slot of scope.querySelectorAll("[data-err]")) slot.textContent = "";
  const general = scope.querySelector("[data-err='']");
  const body = e.body || {};
  const problems = body.problems || (body.field ? [{ field: body.field, message: body.error }] : []);
  const leftover = [];
  let first = null;
  for (const p of problems) {
    let path = p.field || "";
    let slot = null;
    // `timeout.after` → `timeout.after`, `timeout`; `agent_groups[1]` → `agent_groups[1]`, `agent_groups`.
    while (path && !(slot = scope.querySelector("[data-err=\"" + CSS.escape(path) + "\"]"))) {
      path = path.replace(/(\[\d+\]|\.[^.[\]]*|^[^.[\]]*)$/, "");
    }
    if (slot) {
      slot.textContent = (slot.textContent ? slot.textContent + " " : "") + p.message;
      first = first || slot;
    } else leftover.push(p.message);
  }
  if (general) general.textContent = problems.length === 0 ? e.message : leftover.join(" ");
  if (problems.length === 0 || leftover.length) first = first || general;
  status(e.code === 422 ? "Not saved: correct the fields marked." : "Not saved: " + e.message, true);
  if (first) {
    // The field the first problem is about, else the message itself (tabindex -1).
    const input = first.parentElement && first.parentElement.querySelector("[data-field]");
    (input || first).focus();
  }
}

// ---------------------------------------------------------------------------------------------
// Pages

function setNav(kind) {
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === "#/" + kind) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function sourceCell(o) {
  return o.source === "file" ? "file " + o.file + ":" + o.line + " (read-only)" : "database, version " + o.version;
}

async function listPage(kind) {
  const items = await api("GET", "/api/" + kind);
  const k = KINDS[kind];
  const cols = kind === "workflows"
    ? [["Name", (o) => o.name], ["URI", (o) => o.uri || ""], ["Line", (o) => o.line_uri || ""], ["Number", (o) => o.display_number || ""],
      ["Active", (o) => (o.active === false ? "no" : "yes")], ["Managers", (o) => (o.managers || []).join(", ")], ["Source", sourceCell]]
    : [["Name", (o) => o.name], ["Source", sourceCell]];
  const table = el("table", { id: "list", "aria-label": k.title },
    el("thead", {}, el("tr", {}, cols.map(([h]) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, items.map((o) => el("tr", {}, cols.map(([h, f], i) => el("td", { "data-label": h },
      i === 0 ? el("a", { href: "#/" + kind + "/" + encodeURIComponent(o.name), text: f(o) }) : f(o)))))));
  const canCreate = kind !== "workflows" || me.role === "admin";
  return el("div", {}, el("h2", { text: k.title }),
    items.length ? table : el("p", { text: "None yet." }),
    canCreate ? el("p", {}, el("a", { href: "#/" + kind + "/new", id: "create", text: "Create a new " + k.one })) : null);
}

async function context() {
  const [queues, groups, hours, holidays, prompts] = await Promise.all(
    ["queues", "agent-groups", "hours", "holiday-sets", "prompts"].map((k) => api("GET", "/api/" + k).catch(() => [])));
  return { queues, groups, hours, holidays, prompts };
}

/** The editor of one object: `build(doc, ctx)` returns the fields and `collect(body)`. */
async function editPage(kind, name) {
  const isNew = name === "new";
  const doc = isNew ? {} : await api("GET", "/api/" + kind + "/" + encodeURIComponent(name));
  const ctx = await context();
  const k = KINDS[kind];
  const fileOwned = doc.source === "file";
  const nameC = textC("Name", "name", doc.name, isNew ? {} : { readonly: true, reason: "A name cannot be changed: create a new object and delete this one." });
  const editor = EDITORS[kind](doc, ctx);
  const general = el("p", { class: "error", "data-err": "", role: "alert", tabindex: "-1", id: "form-error" });
  const save = el("button", { type: "submit", class: "primary", id: "save", text: isNew ? "Create" : "Save" });
  const form = el("form", { id: "editor", "aria-labelledby": "editor-title", novalidate: true },
    el("h2", { id: "editor-title", text: (isNew ? "New " + k.one : k.one[0].toUpperCase() + k.one.slice(1) + ": " + doc.name) }),
    fileOwned ? el("p", { class: "hint", id: "file-note", text: "Declared in the configuration file " + doc.file + " on line " + doc.line + ": read-only here; edit the file and reload (SIGHUP)." }) : null,
    general,
    el("div", { class: "grid" }, nameC.node, editor.nodes),
    fileOwned ? null : save,
    !isNew && !fileOwned && (kind !== "workflows" || me.role === "admin")
      ? el("button", { type: "button", id: "delete", text: "Delete", onclick: async (ev) => {
        // Two presses: the first asks, in the button itself (no modal dialog).
        const b = ev.currentTarget;
        if (!b.dataset.armed) { b.dataset.armed = "1"; b.textContent = "Press again to delete " + doc.name; return; }
        delete b.dataset.armed;
        b.textContent = "Delete";
        try { await api("DELETE", "/api/" + kind + "/" + encodeURIComponent(doc.name), undefined, { "If-Match": "\"" + doc.version + "\"" }); location.hash = "#/" + kind; status("Deleted."); } catch (e) { showErrors(form, e); }
      } }) : null);
  // A file object is shown, not edited: every control but the play buttons is off.
  if (fileOwned) {
    for (const f of form.querySelectorAll("input, select, textarea, button")) {
      if (f.textContent !== "Play") f.disabled = true;
    }
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = Object.assign({}, doc);
    for (const key of ["source", "version", "file", "line"]) delete body[key];
    body.name = isNew ? nameC.get() : doc.name;
    editor.collect(body);
    save.disabled = true;
    try {
      const saved = isNew
        ? await api("POST", "/api/" + kind, body)
        : await api("PUT", "/api/" + kind + "/" + encodeURIComponent(doc.name), body, { "If-Match": "\"" + doc.version + "\"" });
      status("Saved " + k.one + " " + saved.name + " (version " + saved.version + "); in force for the next call.");
      location.hash = "#/" + kind + "/" + encodeURIComponent(saved.name);
      if (!isNew) render();
    } catch (e) {
      showErrors(form, e);
    } finally {
      save.disabled = false;
    }
  });
  form.editor = editor;
  return form;
}

const EDITORS = {
  "agent-groups": (doc) => {
    const participation = selectC("Participation", "participation", [["informal", "Informal: always in"], ["formal", "Formal: agents sign in and out"]], doc.participation || "informal");
    const routing = selectC("Routing method", "routing", [["longest_idle", "Longest idle"], ["parallel", "Parallel"], ["round_robin", "Round robin"], ["serial", "Serial"], ["attendant", "Attendant"]], doc.routing || "longest_idle");
    const alert = textC("Alert time", "alert_time", doc.alert_time || "20s", { hint: "10s to 600s" });
    const wrapUp = textC("Wrap-up time", "wrap_up", doc.wrap_up, { hint: "after each call, 0s to 3600s; empty: none" });
    const agents = listC("Agents, in order (SIP address)", "agents", doc.agents || [], (v, p) => textC("Agent SIP address", p, v, { placeholder: "sip:alice@example.com" }), { addLabel: "Add an agent", item: "agent" });
    const description = textC("Description", "description", doc.description, { wide: true });
    return {
      nodes: [participation.node, routing.node, alert.node, wrapUp.node, description.node, agents.node], agents,
      collect: (b) => { put(b, "participation", participation.get()); put(b, "routing", routing.get()); put(b, "alert_time", alert.get()); put(b, "wrap_up", wrapUp.get()); put(b, "description", description.get()); put(b, "agents", agents.get()); },
    };
  },
  "queues": (doc, ctx) => {
    const groups = listC("Agent groups, offered in this order", "agent_groups", doc.agent_groups || [], (v, p) => selectC("Agent group", p, ctx.groups.map((g) => g.name), v), { addLabel: "Add an agent group", item: "agent group" });
    const t = doc.timeout || {};
    const o = doc.overflow || {};
    const after = textC("Time-out after", "timeout.after", t.after, { placeholder: "300s", hint: "Leave empty for no time-out." });
    const tAction = actionC("Time-out action", "timeout.action", t.action, ctx, 0);
    const max = textC("Overflow at (calls waiting)", "overflow.max_calls", o.max_calls, { type: "number", hint: "Leave empty for no overflow." });
    const candidate = selectC("Overflow candidate", "overflow.candidate", [["newest", "Newest call"], ["oldest", "Oldest call"]], o.candidate || "newest");
    const oAction = actionC("Overflow action", "overflow.action", o.action, ctx, 0);
    const description = textC("Description", "description", doc.description, { wide: true });
    const every = textC("Announce position and expected wait every", "announce_every", doc.announce_every, { placeholder: "60s", hint: "On entry, then at this interval (15s or more). Leave empty for none." });
    const sayPosition = checkC("Say the caller's position", "announce_position", doc.announce_position !== false);
    const sayWait = checkC("Say the expected wait", "announce_wait", doc.announce_wait !== false);
    const limit = textC("Positions said up to", "announce_position_limit", doc.announce_position_limit, { type: "number", placeholder: "10", hint: "Beyond it: \"more than N callers ahead\"." });
    const pd = doc.periodic_announcement || {};
    const pEvery = textC("Periodic prompt every", "periodic_announcement.every", pd.every, { placeholder: "45s", hint: "15s or more. Leave empty for none." });
    const pPrompt = promptC("Periodic prompt", "periodic_announcement.prompt", pd.prompt, ctx.prompts || []);
    const announce = el("fieldset", { class: "wide" }, el("legend", { text: "Announcements to waiting callers" }), every.node, sayPosition.node, sayWait.node, limit.node, pEvery.node, pPrompt.node, el("p", { class: "error", "data-err": "periodic_announcement" }));
    const timeout = el("fieldset", { class: "wide" }, el("legend", { text: "Time-out" }), after.node, tAction.node, el("p", { class: "error", "data-err": "timeout" }));
    const overflow = el("fieldset", { class: "wide" }, el("legend", { text: "Overflow" }), max.node, candidate.node, oAction.node, el("p", { class: "error", "data-err": "overflow" }));
    return {
      nodes: [description.node, groups.node, timeout, overflow, announce], groups, after, tAction, max, oAction,
      collect: (b) => {
        put(b, "description", description.get());
        put(b, "agent_groups", groups.get());
        const tt = Object.assign({}, t); put(tt, "after", after.get()); put(tt, "action", tAction.get());
        put(b, "timeout", Object.keys(tt).length ? tt : undefined);
        const oo = Object.assign({}, o); put(oo, "max_calls", max.get() === "" ? undefined : Number(max.get())); put(oo, "candidate", oo.max_calls === undefined ? undefined : candidate.get()); put(oo, "action", oAction.get());
        put(b, "overflow", Object.keys(oo).length ? oo : undefined);
        put(b, "announce_every", every.get());
        const on = every.get() !== "";
        put(b, "announce_position", on && !sayPosition.get() ? false : undefined);
        put(b, "announce_wait", on && !sayWait.get() ? false : undefined);
        put(b, "announce_position_limit", on && limit.get() !== "" ? Number(limit.get()) : undefined);
        const pp = {}; put(pp, "every", pEvery.get()); put(pp, "prompt", pPrompt.get());
        put(b, "periodic_announcement", Object.keys(pp).length ? pp : undefined);
      },
    };
  },
  "hours": (doc) => {
    const days = DAYS.map((d) => {
      const r = doc[d] || [];
      const first = textC(cap(d) + ", first range", d + "[0]", r[0], { placeholder: "09:00-12:00" });
      const second = textC(cap(d) + ", second range", d + "[1]", r[1], { placeholder: "13:00-17:30" });
      const fs = el("fieldset", {}, el("legend", { text: cap(d) }), first.node, second.node, el("p", { class: "error", "data-err": d }));
      return { d, fs, first, second };
    });
    return {
      nodes: [el("p", { class: "hint wide", text: "At most two ranges a day, as HH:MM-HH:MM. A day left empty is closed all day." }), days.map((x) => x.fs)], days,
      collect: (b) => { for (const x of days) put(b, x.d, [x.first.get(), x.second.get()].filter(Boolean)); },
    };
  },
  "holiday-sets": (doc) => {
    const list = listC("Holidays", "holidays", doc.holidays || [], (h, p) => {
      h = h || {};
      const name = textC("Holiday name", p + ".name", h.name);
      const start = textC("Starts", p + ".start", h.start, { type: "datetime-local" });
      const end = textC("Ends", p + ".end", h.end, { type: "datetime-local" });
      return { node: el("div", { class: "grid wide" }, name.node, start.node, end.node), name, start, end,
        get: () => (name.get() || start.get() ? { name: name.get(), start: start.get(), end: end.get() } : undefined) };
    }, { addLabel: "Add a holiday", item: "holiday" });
    return { nodes: [list.node], list, collect: (b) => put(b, "holidays", list.get()) };
  },
  "workflows": (doc, ctx) => {
    const manager = me.role !== "admin";
    const active = checkC("Activate this workflow (calls are answered)", "active", doc.active === undefined ? false : doc.active);
    const kind = selectC("Kind", "kind", [["hunt_group", "Hunt group: straight to a queue"], ["interactive", "Interactive: questions first"]], doc.kind || "hunt_group",
      manager ? { disabled: true, reason: URI_REASON } : {});
    const uri = textC("SIP address (URI)", "uri", doc.uri, manager ? { readonly: true, reason: URI_REASON } : { placeholder: "sip:sales@example.com" });
    const line = textC("Trunk number (line URI)", "line_uri", doc.line_uri, manager ? { readonly: true, reason: LINE_REASON } : { placeholder: "tel:+14255550100", hint: "Calls from a trunk to this number reach the workflow." });
    const srtp = selectC("Media encryption of callers (SRTP)", "srtp",
      [["", "Server default"], ["off", "Off: plain RTP"], ["offer", "Offer: SRTP when the caller offers it"], ["required", "Required: callers without SRTP are refused"]],
      doc.srtp || "", manager ? { disabled: true, reason: SRTP_REASON } : {});
    const number = textC("Display number", "display_number", doc.display_number, { placeholder: "+1 425 555 0100" });
    const description = textC("Description", "description", doc.description);
    const language = textC("Language", "language", doc.language || "en-US");
    const anonymous = checkC("Anonymous: callers never learn which agent answered", "anonymous", doc.anonymous);
    const managers = listC("Managers (SIP address)", "managers", doc.managers || [], (v, p) => textC("Manager SIP address", p, v, { placeholder: "sip:carol@example.com" }), { addLabel: "Add a manager", item: "manager" });
    const moh = selectC("Music on hold", "music_on_hold", [["", "Server default"]].concat(ctx.prompts.map((p) => [p.file, p.name])), doc.music_on_hold || "");
    const welcome = promptC("Welcome message", "welcome", doc.welcome, ctx.prompts);
    const hours = selectC("Business hours", "business_hours", [["", "Open all the time"]].concat(ctx.hours.map((h) => h.name)), doc.business_hours || "");
    const zone = textC("Time zone", "time_zone", doc.time_zone || "UTC", { list: "zones", hint: "An IANA zone name, e.g. Europe/Paris." });
    const ooh = doc.out_of_hours || {};
    const oohPrompt = promptC("Message outside business hours", "out_of_hours.prompt", ooh.prompt, ctx.prompts);
    const oohAction = actionC("Then, outside business hours", "out_of_hours.action", ooh.action, ctx, 0);
    const holidays = el("fieldset", { class: "wide" }, el("legend", { text: "Holidays" }),
      ctx.holidays.length ? null : el("p", { class: "hint", text: "No holiday set yet." }),
      ...ctx.holidays.map((h) => checkC(h.name, "holidays." + h.name, (doc.holidays || []).includes(h.name)).node),
      el("p", { class: "error", "data-err": "holidays" }));
    const oh = doc.on_holiday || {};
    const ohPrompt = promptC("Message on holidays", "on_holiday.prompt", oh.prompt, ctx.prompts);
    const ohAction = actionC("Then, on holidays", "on_holiday.action", oh.action, ctx, 0);
    const queue = selectC("Queue", "queue", ctx.queues.map((q) => q.name), doc.queue);
    const question = questionC("question", doc.question, ctx, 1);
    const hunt = el("fieldset", { class: "wide", id: "hunt" }, el("legend", { text: "Queue" }), queue.node);
    const ivr = el("fieldset", { class: "wide", id: "ivr" }, el("legend", { text: "Questions (interactive response)" }), question.node);
    const sync = () => { hunt.hidden = kind.get() !== "hunt_group"; ivr.hidden = kind.get() !== "interactive"; };
    kind.input.addEventListener("change", sync);
    sync();
    const section = (title, ...nodes) => el("fieldset", { class: "wide" }, el("legend", { text: title }), el("div", { class: "grid" }, nodes));
    return {
      nodes: [
        section("General", active.node, kind.node, uri.node, line.node, srtp.node, number.node, description.node, language.node, anonymous.node, moh.node, managers.node),
        section("Welcome", welcome.node),
        section("Business hours", hours.node, zone.node, oohPrompt.node, oohAction.node),
        holidays, section("On holidays", ohPrompt.node, ohAction.node),
        hunt, ivr,
        el("datalist", { id: "zones" }, ZONES.map((z) => el("option", { value: z }))),
      ],
      active, kind, uri, line, srtp, number, managers, welcome, hours, zone, oohPrompt, oohAction, queue, question,
      collect: (b) => {
        b.active = active.get();
        put(b, "kind", kind.get());
        put(b, "uri", uri.get());
        put(b, "line_uri", line.get());
        put(b, "srtp", srtp.get());
        put(b, "display_number", number.get());
        put(b, "description", description.get());
        put(b, "language", language.get());
        put(b, "anonymous", anonymous.get() || (doc.anonymous === false ? false : undefined));
        put(b, "managers", managers.get());
        put(b, "music_on_hold", moh.get());
        put(b, "welcome", welcome.get());
        put(b, "business_hours", hours.get());
        put(b, "time_zone", zone.get());
        const o = Object.assign({}, ooh); put(o, "prompt", oohPrompt.get()); put(o, "action", oohAction.get());
        put(b, "out_of_hours", Object.keys(o).length ? o : undefined);
        put(b, "holidays", ctx.holidays.map((h) => h.name).filter((n) => holidays.querySelector("[data-field=\"holidays." + CSS.escape(n) + "\"]").checked));
        const h = Object.assign({}, oh); put(h, "prompt", ohPrompt.get()); put(h, "action", ohAction.get());
        put(b, "on_holiday", Object.keys(h).length ? h : undefined);
        if (kind.get() === "hunt_group") { put(b, "queue", queue.get()); delete b.question; }
        else { put(b, "question", question.get()); delete b.queue; }
      },
    };
  },
};

const cap = (s) => s[0].toUpperCase() + s.slice(1);

async function promptsPage() {
  const prompts = await api("GET", "/api/prompts");
  const rows = prompts.map((p) => el("tr", {},
    el("td", { "data-label": "Name", text: p.name }),
    el("td", { "data-label": "Use as", text: p.file }),
    el("td", { "data-label": "Length", text: (p.duration_ms / 1000).toFixed(1) + " s" }),
    el("td", { "data-label": "Play" }, el("audio", { controls: true, preload: "none", src: "/api/prompts/" + encodeURIComponent(p.name), "aria-label": "Play " + p.name }))));
  const upName = textC("Prompt name", "name", "");
  const upFile = el("input", { id: "upload-file", type: "file", accept: "audio/wav,.wav", "data-field": "body" });
  const upload = el("form", { id: "upload", "aria-labelledby": "upload-title" },
    el("h3", { id: "upload-title", text: "Upload a WAV file" }),
    el("p", { class: "error", "data-err": "", role: "alert" }),
    upName.node, el("label", { for: "upload-file", text: "WAV file" }), upFile, el("p", { class: "error", "data-err": "body" }),
    el("button", { type: "submit", class: "primary", text: "Upload" }));
  upload.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = upFile.files[0];
    if (!f) { upload.querySelector("[data-err=body]").textContent = "Choose a WAV file."; return; }
    try {
      const p = await api("PUT", "/api/prompts/" + encodeURIComponent(upName.get()), f, { "Content-Type": "audio/wav" });
      await render();
      status("Uploaded " + p.name + " (" + (p.duration_ms / 1000).toFixed(1) + " s): press its play button to hear it.");
    } catch (e) { showErrors(upload, e); }
  });
  const ttsName = textC("Prompt name", "name", "");
  const ttsText = textC("Text to speak", "text", "", { wide: true });
  const ttsLang = textC("Language", "language", "en-US");
  const tts = el("form", { id: "tts", "aria-labelledby": "tts-title" },
    el("h3", { id: "tts-title", text: "Speak a text" }),
    el("p", { class: "error", "data-err": "", role: "alert" }),
    ttsName.node, ttsText.node, ttsLang.node,
    el("button", { type: "submit", class: "primary", text: "Speak and save" }));
  tts.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const p = await api("POST", "/api/prompts", { name: ttsName.get(), text: ttsText.get(), language: ttsLang.get() || undefined });
      await render();
      status("Saved " + p.name + " (" + (p.duration_ms / 1000).toFixed(1) + " s): press its play button to hear it.");
    } catch (e) { showErrors(tts, e); }
  });
  return el("div", {}, el("h2", { text: "Prompts" }),
    prompts.length ? el("table", { id: "list", "aria-label": "Prompts" },
      el("thead", {}, el("tr", {}, ["Name", "Use as", "Length", "Play"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows)) : el("p", { text: "No prompt uploaded yet." }),
    el("div", { class: "grid" }, el("div", {}, upload), el("div", {}, tts)));
}

let renders = 0;

async function render() {
  if (!me) return;
  // Only the latest navigation draws: a slower earlier one is dropped when it completes.
  const generation = ++renders;
  const [, kind, name] = (location.hash || "#/workflows").split("/").map((s, i) => (i === 2 ? decodeURIComponent(s) : s));
  const k = (KINDS[kind] || kind === "prompts") ? kind : "workflows";
  setNav(k);
  const view = $("view");
  try {
    const page = k === "prompts" ? await promptsPage() : name ? await editPage(k, name) : await listPage(k);
    if (generation !== renders) return;
    view.replaceChildren(page);
    const h = view.querySelector("h2");
    if (h) { h.tabIndex = -1; h.focus(); }
  } catch (e) {
    if (e.code === 401 || generation !== renders) return;
    view.replaceChildren(el("p", { class: "error", role: "alert", id: "page-error", text: e.message }));
  }
}

function showLogin(message) {
  me = null;
  csrf = "";
  $("view").replaceChildren();
  $("nav").hidden = true;
  $("who").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("password").value = "";
  $("user").focus();
}

function signedIn(s) {
  csrf = s.csrf_token;
  me = { user: s.user, role: s.role };
  $("login").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who").textContent = "Signed in as " + s.user + " (" + s.role + ").";
  $("logout").hidden = false;
  render();
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    const s = await api("POST", "/api/session", { user: $("user").value.trim(), password: $("password").value });
    $("password").value = "";
    if (s.role === "agent") {
      try { await api("DELETE", "/api/session"); } catch (e) { /* ended already */ }
      csrf = "";
      $("login-error").textContent = "Sign-in refused: this tool is for administrators and managers.";
      return;
    }
    signedIn(s);
  } catch (e) {
    $("login-error").textContent = e.code === 401 ? "Unknown user name or wrong password." : e.message;
    $("password").focus();
  }
});
$("logout").addEventListener("click", async () => {
  try { await api("DELETE", "/api/session"); } catch (e) { /* ended already */ }
  showLogin("");
  status("Signed out.");
});
window.addEventListener("hashchange", render);
(async () => {
  try { signedIn(await api("GET", "/api/session")); } catch (e) { showLogin(""); }
})();
