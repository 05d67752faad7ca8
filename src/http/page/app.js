// The vodup status page: polls /files.json and renders it. Every value from the server goes into
// the page as text (textContent), never as markup, and never into an attribute except a link's
// href, which must be an http(s) URL.
"use strict";

const PAGE = 50;
const REFRESH_MS = 2000;
const STATES = ["queued", "hashing", "uploading", "finishing", "done", "failed", "waiting",
  "superseded", "gone"];

let lastText = "";   // the newest page as last rendered, to skip redrawing an unchanged one
let newest = [];     // rows of the newest page
let older = [];      // rows of the pages loaded with "Show older files"
let next = null;     // the `before` key of the next older page

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function human(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? bytes + " B" : value.toFixed(1) + " " + units[unit];
}

function copy(text, button) {
  const copied = () => {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  };
  const fallback = () => {
    const area = el("textarea", "offscreen");
    area.value = text;
    area.readOnly = true;
    document.body.appendChild(area);
    area.select();
    try {
      document.execCommand("copy");
      copied();
    } finally {
      area.remove();
    }
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(copied, fallback);
  } else {
    fallback();
  }
}

function fileCell(f) {
  const td = el("td", "file");
  td.appendChild(el("div", "name", f.name));
  const where = f.movedTo ? "now " + f.movedTo : f.path;
  td.appendChild(el("div", "path muted", where));
  return td;
}

function progressCell(f) {
  const td = el("td", "progress");
  if (f.size === 0) {
    td.appendChild(el("div", "muted", "empty file"));
    return td;
  }
  const bar = el("progress");
  bar.max = 100;
  bar.value = f.percent;
  td.appendChild(bar);
  td.appendChild(el("div", "muted",
    f.percent.toFixed(0) + "% of " + human(f.size)));
  return td;
}

function resultCell(f) {
  const td = el("td", "result");
  if (f.fileId) {
    const line = el("div", "file-id");
    line.appendChild(el("span", "muted", "fileId "));
    line.appendChild(el("code", "id", f.fileId));
    const button = el("button", "copy", "Copy");
    button.type = "button";
    button.addEventListener("click", () => copy(f.fileId, button));
    line.appendChild(button);
    td.appendChild(line);
  }
  if (f.url && /^https?:\/\//i.test(f.url)) {
    const link = el("a", "url", f.url);
    link.href = f.url;
    link.rel = "noopener noreferrer";
    link.target = "_blank";
    td.appendChild(link);
  }
  if (f.instant) td.appendChild(el("div", "muted", "instant upload (same content seen before)"));
  if (f.error) {
    const text = "Error " + f.error.code + ": " + f.error.message +
      (f.error.codeDesc ? " (" + f.error.codeDesc + ")" : "");
    td.appendChild(el("div", "error", text));
  }
  if (f.reason) td.appendChild(el("div", "reason", f.reason));
  if (f.disposalFailed) td.appendChild(el("div", "error", f.disposalFailed));
  return td;
}

function row(f) {
  const state = STATES.includes(f.state) ? f.state : "unknown";
  const tr = el("tr", "state-" + state);
  tr.appendChild(fileCell(f));
  tr.appendChild(el("td", "watch muted", f.watch || "vodup upload"));
  const badge = el("span", "badge", f.state);
  const stateCell = el("td", "state");
  stateCell.appendChild(badge);
  tr.appendChild(stateCell);
  tr.appendChild(progressCell(f));
  tr.appendChild(el("td", "speed", f.speed > 0 ? human(f.speed) + "/s" : "–"));
  tr.appendChild(resultCell(f));
  return tr;
}

function render() {
  const shown = new Set();
  const body = document.createElement("tbody");
  for (const f of newest.concat(older)) {
    if (shown.has(f.key)) continue;
    shown.add(f.key);
    body.appendChild(row(f));
  }
  document.querySelector("#files tbody").replaceWith(body);
  document.getElementById("empty").hidden = shown.size > 0;
  document.getElementById("older").hidden = next === null;
}

async function page(before) {
  // From the origin, not the document's URL: a page opened as http://user:token@host/ would
  // make a relative URL carry those credentials, which fetch refuses (the browser sends the
  // basic credentials it already holds for this origin).
  let url = location.origin + "/files.json?limit=" + PAGE;
  if (before !== null && before !== undefined) url += "&before=" + encodeURIComponent(before);
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error("HTTP " + response.status);
  return response.text();
}

async function refresh() {
  const updated = document.getElementById("updated");
  try {
    const text = await page(null);
    if (text !== lastText) {
      lastText = text;
      const data = JSON.parse(text);
      newest = data.files;
      if (older.length === 0) next = data.next;
      render();
    }
    updated.textContent = "Updated " + new Date().toLocaleTimeString() +
      "; refreshes every " + REFRESH_MS / 1000 + " s";
    updated.className = "muted";
  } catch (e) {
    updated.textContent = "Cannot reach vodup (" + e.message + "); retrying";
    updated.className = "error";
  }
}

async function loadOlder() {
  if (next === null) return;
  try {
    const data = JSON.parse(await page(next));
    older = older.concat(data.files);
    next = data.next;
    render();
  } catch (e) {
    document.getElementById("updated").textContent = "Cannot load older files (" + e.message + ")";
  }
}

document.getElementById("older").addEventListener("click", loadOlder);
refresh();
setInterval(refresh, REFRESH_MS);
