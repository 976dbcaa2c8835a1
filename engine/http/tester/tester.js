// The event tester (engine/http/tester.py): the editor's event is previewed as it is typed,
// through the shim's own preview (secrets redacted), with the source's write key as Basic
// auth. Everything shown is put in with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "engine-tester-write-key";
const DEBOUNCE_MS = 300;

let writeKey = "";
let destinations = [];
let lastSample = "";
let pending = null;
let sequence = 0;

function basicAuth() {
  // The write key is the username, the password is empty (as Segment's libraries send it).
  const bytes = new TextEncoder().encode(writeKey + ":");
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

async function api(path, options = {}) {
  const headers = { Authorization: basicAuth(), ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = { message: `${response.status} ${response.statusText}` };
  }
  if (!response.ok) {
    throw new Error(body && body.message ? body.message : `${response.status}`);
  }
  return body;
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

function current() {
  return destinations.find((d) => d.slug === $("destination").value);
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

async function connect(event) {
  if (event) event.preventDefault();
  writeKey = $("key").value.trim();
  try {
    const view = await api("tester/api/destinations");
    destinations = view.destinations;
    sessionStorage.setItem(KEY, writeKey);
    const select = $("destination");
    select.replaceChildren(...destinations.map((d) => {
      const option = element("option", `${d.name} (${d.slug})`);
      option.value = d.slug;
      return option;
    }));
    setStatus(`Source ${view.source}: ${destinations.length} destination(s)` +
              (view.dry_run ? "; dry run: requests are recorded, not sent." : "."));
    $("workspace").hidden = false;
    chooseDestination();
    refreshRecent();
  } catch (error) {
    $("workspace").hidden = true;
    setStatus(`Cannot connect: ${error.message}`, true);
  }
}

function chooseDestination() {
  const destination = current();
  if (!destination) return;
  $("about").textContent = destination.accepts
    ? `Accepts ${destination.accepts.join(", ")} calls.` : "Accepts every call type.";
  const rules = $("rules");
  rules.replaceChildren(...destination.rules.map((rule) => {
    const item = element("li");
    item.append(element("span", rule.name, "rule"), ` ${rule.matches}; ${rule.does}`);
    return item;
  }));
  const editor = $("event");
  if (!editor.value.trim() || editor.value === lastSample) useSample();
  schedulePreview(0);
}

function useSample() {
  const destination = current();
  const sample = destination && destination.sample
    ? destination.sample : { type: "track", event: "Signed Up", userId: "u1" };
  lastSample = pretty(sample);
  $("event").value = lastSample;
  schedulePreview(0);
}

function schedulePreview(delay = DEBOUNCE_MS) {
  clearTimeout(pending);
  pending = setTimeout(runPreview, delay);
}

async function runPreview() {
  const destination = current();
  if (!destination) return;
  const mine = ++sequence;
  $("busy").hidden = false;
  try {
    const result = await api(`tester/api/preview/${encodeURIComponent(destination.slug)}`, {
      method: "POST", headers: { "Content-Type": "text/plain" }, body: $("event").value,
    });
    if (mine === sequence) showResult(result);
  } catch (error) {
    if (mine === sequence) showResult({ event_error: { message: error.message } });
  } finally {
    if (mine === sequence) $("busy").hidden = true;
  }
}

function showResult(result) {
  const problem = $("event-error");
  const list = $("outcomes");
  list.replaceChildren();
  if (result.event_error) {
    const where = result.event_error.line
      ? `line ${result.event_error.line}, column ${result.event_error.column}: ` : "";
    problem.textContent = where + result.event_error.message;
    problem.hidden = false;
    return;
  }
  problem.hidden = true;
  for (const outcome of result.outcomes) {
    const item = element("li");
    item.className = "outcome";
    if (outcome.request) {
      item.dataset.kind = "request";
      item.append(element("span", `rule ${outcome.rule}`, "rule"),
                  ` ${outcome.request.method} ${outcome.request.url}`,
                  element("pre", pretty(outcome.request)));
    } else if (outcome.skipped !== undefined) {
      item.dataset.kind = "skipped";
      if (outcome.rule) item.append(element("span", `rule ${outcome.rule}`, "rule"), " ");
      item.append(element("span", `skipped: ${outcome.skipped}`, "skipped"));
    } else {
      item.dataset.kind = "error";
      item.append(element("span", `rejected: ${outcome.error}`, "error"));
    }
    list.append(item);
  }
  if (!result.outcomes.length) list.append(element("li", "no outcome", "muted"));
}

async function send() {
  let event;
  try {
    event = JSON.parse($("event").value);
  } catch (error) {
    $("sent").textContent = "not JSON: nothing sent";
    return;
  }
  const call = !event || typeof event !== "object" ? "track"
    : typeof event.type === "string" ? event.type
    : typeof event.action === "string" ? event.action : "track";
  try {
    const reply = await api(`v1/${encodeURIComponent(call)}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(event),
    });
    $("sent").textContent = reply.rejected ? `rejected: ${reply.rejected[0].message}` : "accepted";
  } catch (error) {
    $("sent").textContent = `refused: ${error.message}`;
  }
  refreshRecent();
}

function rows(target, items, summarize) {
  target.replaceChildren(...items.map((item) => {
    const row = element("li");
    const details = element("details");
    details.append(element("summary", summarize(item)), element("pre", pretty(item)));
    row.append(details);
    return row;
  }));
  if (!items.length) target.append(element("li", "none", "muted"));
}

async function refreshRecent() {
  try {
    const [recorded, dead] = await Promise.all([
      api("v1/recorded?limit=20"), api("v1/dead-letters?limit=20"),
    ]);
    rows($("recorded"), recorded.recorded,
         (r) => `#${r.id} ${r.destination} ${r.rule}: ${r.request.method} ${r.request.url}`);
    rows($("dead"), dead.dead_letters,
         (d) => `#${d.id} ${d.destination} ${d.rule}: ${d.last_status ?? ""} ${d.last_error ?? ""}`);
  } catch (error) {
    setStatus(`Cannot read recent requests: ${error.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("connect").addEventListener("submit", connect);
  $("destination").addEventListener("change", chooseDestination);
  $("event").addEventListener("input", () => schedulePreview());
  $("sample").addEventListener("click", useSample);
  $("send").addEventListener("click", send);
  $("refresh").addEventListener("click", refreshRecent);
  const saved = sessionStorage.getItem(KEY);
  if (saved) {
    $("key").value = saved;
    connect();
  }
});
