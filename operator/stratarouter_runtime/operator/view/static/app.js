"use strict";
// The web timeline of StrataRouter Executions. Plain JS, no framework, nothing from another host.
//
// Every URL below is relative to the page (.../apis/view.stratarouter.io/v1alpha1/ui/), so the page works
// under whatever prefix a proxy adds, and every call goes through the same API server under the user's
// own identity: the list, the Execution and its Events from the standard API, history, states and diffs
// from the view API. History pages carry no state bodies; a state is fetched when its point is clicked.

const CRD = "../../../stratarouter.io/v1alpha1";
const CORE = "../../../../api/v1";
const VIEW = "..";
const POLL_MS = 3000;
const LIST_PAGE = 100;
const PALETTE = 8; // attempt colours .a0 ... .a7 in app.css, reused past eight attempts
const MAX_STATE_CHARS = 200000;

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------------------
// Fetching and small helpers

async function getJSON(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!resp.ok) {
    const err = new Error(`${resp.status} ${await messageOf(resp)} (${url})`);
    err.status = resp.status;
    throw err;
  }
  return resp.json();
}

async function messageOf(resp) {
  try {
    const body = await resp.json();
    return body.message || resp.statusText;
  } catch (_) {
    return resp.statusText;
  }
}

function showError(err) {
  const box = $("error");
  box.textContent = String(err.message || err);
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

// An element with attributes and children (strings become text nodes: nothing is parsed as HTML).
function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

function svg(tag, attrs, ...children) {
  return build(document.createElementNS("http://www.w3.org/2000/svg", tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function age(timestamp) {
  const seconds = Math.max(0, (Date.now() - Date.parse(timestamp)) / 1000);
  if (seconds < 120) return `${Math.round(seconds)}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

function clock(time) {
  return new Date(time).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function short(value, limit = 160) {
  const text = value === undefined ? "" : JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

function attemptClass(attempt) {
  return `a${(Math.max(1, attempt || 1) - 1) % PALETTE}`;
}

// ---------------------------------------------------------------------------------------------------
// Polling: one poller at a time, for the open view; a tick never overlaps the one before

let poller = null;

function startPolling(tick) {
  const mine = { id: null };
  poller = mine;
  const run = async () => {
    if (poller !== mine) return;
    try {
      await tick();
      clearError();
      $("live").classList.toggle("beat");
    } catch (err) {
      showError(err);
    }
    if (poller === mine) mine.id = setTimeout(run, POLL_MS);
  };
  run();
}

function stopPolling() {
  if (poller) clearTimeout(poller.id);
  poller = null;
}

// ---------------------------------------------------------------------------------------------------
// Routing: #/?namespace=&phase=  |  #/executions/NS/NAME  |  #/executions/NS/NAME/diff/A/B

function route() {
  stopPolling();
  clearError();
  for (const id of ["list-view", "timeline-view", "diff-view"]) $(id).hidden = true;
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "executions" && parts.length >= 3) {
    const ref = { namespace: parts[1], name: parts[2] };
    if (parts[3] === "diff") return openDiff(ref, Number(parts[4]), Number(parts[5]));
    return openTimeline(ref);
  }
  return openList(new URLSearchParams(query || ""));
}

function executionHash(ref, ...rest) {
  return ["#", "executions", enc(ref.namespace), enc(ref.name), ...rest].join("/");
}

// ---------------------------------------------------------------------------------------------------
// The list of Executions

const list = { namespace: "", phase: "", pages: 1 };

function openList(params) {
  list.namespace = params.get("namespace") || "";
  list.phase = params.get("phase") || "";
  list.pages = 1;
  $("f-namespace").value = list.namespace;
  $("f-phase").value = list.phase;
  $("list-view").hidden = false;
  document.title = "StrataRouter executions";
  startPolling(refreshList);
}

function listUrl(cont) {
  const base = list.namespace ? `${CRD}/namespaces/${enc(list.namespace)}/executions` : `${CRD}/executions`;
  const query = new URLSearchParams({ limit: String(LIST_PAGE) });
  if (cont) query.set("continue", cont);
  return `${base}?${query}`;
}

// The pages the user has asked for so far ("More" asks for one more), read again on each tick.
async function refreshList() {
  const items = [];
  let cont = null;
  for (let page = 0; page < list.pages; page++) {
    const body = await getJSON(listUrl(cont));
    items.push(...(body.items || []));
    cont = (body.metadata || {}).continue || null;
    if (!cont) break;
  }
  renderList(items.filter((item) => !list.phase || phaseOf(item) === list.phase), cont);
}

function phaseOf(item) {
  return (item.status || {}).phase || "Pending";
}

function renderList(items, more) {
  const rows = items.map(listRow);
  $("executions").tBodies[0].replaceChildren(...rows);
  $("list-empty").hidden = rows.length > 0;
  $("list-more").hidden = !more;
}

function listRow(item) {
  const meta = item.metadata;
  const status = item.status || {};
  const ref = { namespace: meta.namespace, name: meta.name };
  const row = el(
    "tr",
    { class: "clickable", "data-name": meta.name, "data-namespace": meta.namespace },
    el("td", {}, meta.namespace),
    el("td", {}, el("a", { href: executionHash(ref) }, meta.name)),
    el("td", {}, el("span", { class: `phase ${phaseOf(item)}` }, phaseOf(item))),
    el("td", { class: "num" }, String((status.lastCheckpoint || {}).step ?? "")),
    el("td", { class: "num" }, String(status.restarts || 0)),
    el("td", { class: "num" }, String(status.attempt || "")),
    el("td", { class: "num", title: meta.creationTimestamp }, age(meta.creationTimestamp)),
  );
  row.addEventListener("click", () => {
    location.hash = executionHash(ref);
  });
  return row;
}

function onFilter(event) {
  event.preventDefault();
  const query = new URLSearchParams();
  if ($("f-namespace").value.trim()) query.set("namespace", $("f-namespace").value.trim());
  if ($("f-phase").value) query.set("phase", $("f-phase").value);
  location.hash = `#/?${query}`;
}

// ---------------------------------------------------------------------------------------------------
// An Execution's timeline

let view = null;

function executionUrl(ref) {
  return `${CRD}/namespaces/${enc(ref.namespace)}/executions/${enc(ref.name)}`;
}

function viewUrl(ref, sub, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined) query.set(key, String(value));
  }
  const path = `${VIEW}/namespaces/${enc(ref.namespace)}/executions/${enc(ref.name)}/${sub}`;
  return query.size ? `${path}?${query}` : path;
}

function eventsUrl(ref) {
  const selector = `involvedObject.kind=Execution,involvedObject.name=${ref.name}`;
  return `${CORE}/namespaces/${enc(ref.namespace)}/events?fieldSelector=${enc(selector)}`;
}

function openTimeline(ref) {
  $("timeline-view").hidden = false;
  $("t-title").textContent = `${ref.namespace}/${ref.name}`;
  $("t-state").hidden = true;
  document.title = `${ref.name} · StrataRouter`;
  view = { ref, obj: null, events: [], points: [], after: null, follow: true, next: null, picks: [] };
  startPolling(refreshTimeline);
}

// One tick: the Execution, its Events and Snapshots; history only where it can have grown (the newest
// page, while the view follows it): a page of older checkpoints does not change.
async function refreshTimeline() {
  const current = view;
  const ref = current.ref;
  const [obj, stored, events, snapshots] = await Promise.all([
    getJSON(executionUrl(ref)),
    getJSON(viewUrl(ref, "status")).catch(() => null), // none before the run's first write
    getJSON(eventsUrl(ref)).catch(() => ({ items: [] })), // Events may be out of the user's reach
    getJSON(`${CRD}/namespaces/${enc(ref.namespace)}/snapshots`).catch(() => ({ items: [] })),
  ]);
  if (view !== current) return;
  current.obj = obj;
  current.stored = stored;
  current.events = timelineEvents(obj, events.items || [], snapshots.items || []);
  if (current.follow) await followHistory(current);
  if (view === current) renderTimeline(current);
}

function pageSize() {
  return Number($("p-size").value);
}

// The cursor of the newest page: the last checkpoint's step less a page of checkpoints at the spec's
// interval. The store's step (/status) is live; the Execution's lastCheckpoint is the fallback.
function latestCursor(current) {
  const obj = current.obj;
  const stored = current.stored ? current.stored.lastCheckpointStep : null;
  const last = stored ?? ((obj.status || {}).lastCheckpoint || {}).step;
  if (last === undefined || last === null) return null;
  const interval = ((obj.spec || {}).checkpoint || {}).interval || 1;
  const after = last - pageSize() * interval;
  return after >= 0 ? after : null;
}

// The view API's history cursor "after step N". Its continue token is opaque to clients; the page makes
// the same token (base64url of {"k": "history", "after": N}) to open a page anywhere (the newest page,
// the one before), which the API has no other parameter for.
function historyToken(after) {
  if (after === null || after === undefined || after < 0) return null;
  const text = btoa(JSON.stringify({ k: "history", after }));
  return text.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function historyUrl(ref, after) {
  return viewUrl(ref, "history", { limit: pageSize(), continue: historyToken(after) });
}

async function followHistory(current) {
  if (!current.points.length) {
    current.after = latestCursor(current);
    return loadPage(current, current.after);
  }
  // Only what came after the newest point shown; the oldest points leave the page as new ones arrive.
  const last = current.points[current.points.length - 1].step;
  const page = normalizePage(await getJSON(historyUrl(current.ref, last)));
  if (!current.follow) return undefined; // paged away meanwhile
  current.points = current.points.concat(page.items).slice(-pageSize());
  current.after = current.points.length ? current.points[0].step - 1 : current.after;
  return undefined;
}

async function loadPage(current, after, keepIfEmpty = false) {
  const page = normalizePage(await getJSON(historyUrl(current.ref, after)));
  if (keepIfEmpty && !page.items.length) return false;
  current.after = after;
  current.points = page.items;
  current.next = page.next;
  return true;
}

// A history page: its checkpoints (no states) and the token of the next page, if there is one.
function normalizePage(body) {
  const items = (body.items || []).map((cp) => ({
    step: cp.step,
    attempt: cp.attempt || 1,
    time: Date.parse(cp.timestamp),
    sizeBytes: cp.sizeBytes,
  }));
  return { items, next: (body.metadata || {}).continue || null };
}

async function goToPage(which) {
  const current = view;
  if (!current || !current.obj) return;
  const first = current.points.length ? current.points[0].step : 0;
  const size = pageSize();
  const interval = ((current.obj.spec || {}).checkpoint || {}).interval || 1;
  current.follow = which === "latest";
  let after = null;
  if (which === "latest") after = latestCursor(current);
  if (which === "prev") after = first - 1 - size * interval >= 0 ? first - 1 - size * interval : null;
  if (which === "next") after = current.points.length ? current.points[current.points.length - 1].step : null;
  try {
    // Past the newest checkpoint, "Next" stays on the newest page and follows the run.
    if (!(await loadPage(current, after, which === "next"))) current.follow = true;
    renderTimeline(current);
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------------------------------------------
// Events of the run: failures with their cause, recoveries with their backoff, snapshots, restores

const CAUSES = [
  [/OOM-killed \(exit code (\d+)\)/, (m) => `OOMKilled (exit code ${m[1]})`],
  [/was evicted: ([^;]*)/, (m) => `Evicted: ${m[1]}`],
  [/node (\S+) of pod \S+ is gone/, (m) => `NodeLost (${m[1]})`],
  [/failed with exit code (\d+)/, (m) => `exit code ${m[1]}`],
  [/was deleted by someone else/, () => "pod deleted"],
];

function causeOf(message) {
  for (const [pattern, label] of CAUSES) {
    const match = pattern.exec(message);
    if (match) return label(match);
  }
  return message;
}

function numberAfter(text, pattern) {
  const match = pattern.exec(text || "");
  return match ? Number(match[1]) : null;
}

function eventTime(event) {
  return Date.parse(event.eventTime || event.lastTimestamp || event.firstTimestamp || event.metadata.creationTimestamp);
}

// One entry of the timeline from a Kubernetes Event on the Execution (null: not one the timeline draws).
function fromEvent(event) {
  const message = event.message || "";
  const at = eventTime(event);
  switch (event.reason) {
    case "Recovering": {
      const next = numberAfter(message, /attempt (\d+) in/);
      return {
        at,
        kind: "failure",
        attempt: next ? next - 1 : null,
        step: numberAfter(message, /from step (\d+)/),
        text: causeOf(message),
        detail: message,
      };
    }
    case "Recovered":
      return {
        at,
        kind: "recovery",
        attempt: numberAfter(message, /attempt (\d+)/),
        step: numberAfter(message, /from step (\d+)/),
        text: `resumed after a ${numberAfter(message, /after a ([\d.]+)s backoff/) ?? "?"}s backoff`,
        backoff: numberAfter(message, /after a ([\d.]+)s backoff/),
        detail: message,
      };
    case "Restored":
      return { at, kind: "restore", attempt: null, step: numberAfter(message, /step (\d+)/), text: message, detail: message };
    case "Suspended":
    case "Resumed":
      return { at, kind: event.reason.toLowerCase(), attempt: null, step: numberAfter(message, /step (\d+)/), text: message };
    default:
      if (event.type !== "Warning") return null;
      return { at, kind: "failure", attempt: null, step: null, text: `${event.reason}: ${causeOf(message)}`, detail: message };
  }
}

function fromSnapshot(snapshot) {
  const status = snapshot.status || {};
  return {
    at: Date.parse(status.createdAt || snapshot.metadata.creationTimestamp),
    kind: "snapshot",
    attempt: null,
    step: status.step ?? null,
    text: `snapshot ${snapshot.metadata.name} (${status.phase || "Pending"})`,
  };
}

function timelineEvents(obj, events, snapshots) {
  const name = obj.metadata.name;
  const entries = events.map(fromEvent).filter(Boolean);
  for (const snapshot of snapshots) {
    if ((snapshot.spec || {}).executionName === name) entries.push(fromSnapshot(snapshot));
  }
  return entries.sort((a, b) => a.at - b.at);
}

// Failures the Events no longer tell of (the API server keeps Events an hour by default): where the
// points of this page go from one attempt to the next and no failure of that attempt is known, one is
// added, with its cause when it is the last failure (status.recovery).
function withDerivedFailures(current) {
  const known = new Set(current.events.filter((e) => e.kind === "failure" && e.attempt).map((e) => e.attempt));
  const recovery = (current.obj.status || {}).recovery || {};
  const derived = [];
  const points = current.points;
  for (let i = 1; i < points.length; i++) {
    const ended = points[i - 1];
    if (ended.attempt === points[i].attempt || known.has(ended.attempt)) continue;
    known.add(ended.attempt);
    const last = recovery.failedAttempt === ended.attempt;
    const cause = last ? `${recovery.reason}${recovery.exitCode != null ? ` (exit code ${recovery.exitCode})` : ""}` : null;
    derived.push({
      at: last && recovery.failedAt ? Date.parse(recovery.failedAt) : ended.time + 1,
      kind: "failure",
      attempt: ended.attempt,
      step: ended.step,
      text: cause || `attempt ${ended.attempt} ended (its cause is no longer in the Events)`,
      detail: "from the history: the next checkpoint is another attempt's",
    });
  }
  return derived.length ? current.events.concat(derived).sort((a, b) => a.at - b.at) : current.events;
}

// The attempts' spans over time: each failure ends one, each recovery starts the next.
function attemptSpans(obj, events, now) {
  const meta = obj.metadata;
  const status = obj.status || {};
  const spans = [];
  let start = Date.parse(status.startTime || meta.creationTimestamp);
  let attempt = 1;
  for (const entry of events) {
    if (entry.kind === "failure" && entry.attempt) {
      spans.push({ attempt: entry.attempt, from: start, to: entry.at, failed: entry });
      start = entry.at;
      attempt = entry.attempt + 1;
    } else if (entry.kind === "recovery" && entry.attempt) {
      if (entry.at > start) spans.push({ attempt: null, from: start, to: entry.at, backoff: entry });
      start = entry.at;
      attempt = entry.attempt;
    }
  }
  const end = status.completionTime ? Date.parse(status.completionTime) : now;
  spans.push({ attempt: status.attempt || attempt, from: start, to: Math.max(end, start) });
  return spans;
}

// ---------------------------------------------------------------------------------------------------
// Drawing

const W = 960;

function scale(from, to, outFrom, outTo) {
  const span = to - from || 1;
  return (value) => outFrom + ((value - from) / span) * (outTo - outFrom);
}

function renderTimeline(current) {
  const shown = { ...current, events: withDerivedFailures(current) };
  renderSummary(current.obj, current.stored);
  renderOverview(shown);
  renderChart(shown, current);
  renderEvents(shown.events);
  const points = current.points;
  $("t-range").textContent = points.length
    ? `steps ${points[0].step}–${points[points.length - 1].step} (${points.length} on this page)`
    : "(none yet)";
}

function renderSummary(obj, stored) {
  const status = obj.status || {};
  // The store's own step is live; the Execution's lastCheckpoint is a coalesced copy that may lag.
  const step = stored ? stored.lastCheckpointStep : (status.lastCheckpoint || {}).step;
  const rows = [
    ["Phase", status.phase || "Pending"],
    ["Step", step ?? "–"],
    ["Attempt", status.attempt || "–"],
    ["Restarts", status.restarts || 0],
    ["Age", age(obj.metadata.creationTimestamp)],
    ["Reason", status.reason || ""],
    ["Message", status.message || ""],
  ];
  if (status.recovery) {
    const r = status.recovery;
    rows.push(["Last failure", `${r.reason}${r.exitCode != null ? ` (exit code ${r.exitCode})` : ""}, backoff ${r.backoffSeconds}s`]);
  }
  const shown = rows.filter(([, value]) => value !== "");
  $("t-summary").replaceChildren(...shown.flatMap(([key, value]) => [el("dt", {}, key), el("dd", { "data-key": key }, String(value))]));
}

function renderOverview(current) {
  const now = Date.now();
  const spans = attemptSpans(current.obj, current.events, now);
  const x = scale(spans[0].from, spans[spans.length - 1].to, 10, W - 10);
  const chart = svg("svg", { viewBox: `0 0 ${W} 64`, class: "overview", role: "img" });
  for (const span of spans) chart.append(spanShape(span, x));
  for (const entry of current.events) chart.append(eventMarker(entry, x(entry.at), 4, 44));
  chart.append(
    svg("text", { x: 10, y: 60, class: "tick" }, clock(spans[0].from)),
    svg("text", { x: W - 10, y: 60, class: "tick end" }, clock(spans[spans.length - 1].to)),
  );
  $("t-overview").replaceChildren(chart);
}

function spanShape(span, x) {
  const left = x(span.from);
  const width = Math.max(1, x(span.to) - left);
  if (span.attempt === null) {
    return svg("rect", { x: left, y: 12, width, height: 28, class: "backoff" },
      svg("title", {}, span.backoff.text));
  }
  const group = svg("g", { class: "span", "data-attempt": span.attempt },
    svg("rect", { x: left, y: 12, width, height: 28, class: attemptClass(span.attempt) },
      svg("title", {}, `attempt ${span.attempt}${span.failed ? `: ${span.failed.text}` : ""}`)));
  if (width > 70) group.append(svg("text", { x: left + 6, y: 31, class: "label" }, `attempt ${span.attempt}`));
  return group;
}

const MARKS = { failure: "✕", recovery: "↻", snapshot: "◆", restore: "⤺", suspended: "⏸", resumed: "▶" };

function eventMarker(entry, cx, top, bottom) {
  return svg("g", { class: `mark ${entry.kind}`, "data-kind": entry.kind },
    svg("line", { x1: cx, x2: cx, y1: top, y2: bottom }),
    svg("text", { x: cx, y: top + 8, class: "glyph" }, MARKS[entry.kind] || "•"),
    svg("title", {}, `${clock(entry.at)} ${entry.kind}: ${entry.text}`));
}

function renderChart(current, memo) {
  const points = current.points;
  // Drawn again only when something on it changed (a tick that brought nothing leaves it alone).
  const key = [points.length, points.length && points[0].step, points.length && points[points.length - 1].step,
    points.length && points[points.length - 1].attempt, current.events.length].join(":");
  if (memo.drawn === key) return;
  memo.drawn = key;
  const H = 260;
  const pad = { left: 56, right: 12, top: 14, bottom: 26 };
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "points", role: "img" });
  if (!points.length) {
    chart.append(svg("text", { x: W / 2, y: H / 2, class: "tick middle" }, "no checkpoints on this page"));
    $("t-chart").replaceChildren(chart);
    renderLegend(points);
    return;
  }
  const t0 = points[0].time;
  const t1 = Math.max(points[points.length - 1].time, t0 + 1);
  const x = scale(t0, t1, pad.left, W - pad.right);
  const y = scale(points[0].step, Math.max(points[points.length - 1].step, points[0].step + 1), H - pad.bottom, pad.top);
  chart.append(...axes(points, x, y, H, pad));
  for (const entry of current.events) {
    if (entry.at >= t0 && entry.at <= t1) chart.append(eventMarker(entry, x(entry.at), pad.top, H - pad.bottom));
  }
  const radius = Math.min(3.5, Math.max(2, ((W - pad.left - pad.right) / points.length) * 0.6));
  chart.append(...points.map((point) => pointShape(point, x(point.time), y(point.step), radius)));
  // A click anywhere on the chart picks the nearest point: dense pages have points too small to aim at.
  chart.addEventListener("click", (event) => {
    const nearest = nearestPoint(chart, event, points, x, y);
    if (nearest) pick(nearest.step);
  });
  $("t-chart").replaceChildren(chart);
  renderLegend(points);
}

function axes(points, x, y, H, pad) {
  const first = points[0];
  const last = points[points.length - 1];
  return [
    svg("line", { x1: pad.left, x2: W - pad.right, y1: H - pad.bottom, y2: H - pad.bottom, class: "axis" }),
    svg("line", { x1: pad.left, x2: pad.left, y1: pad.top, y2: H - pad.bottom, class: "axis" }),
    svg("text", { x: pad.left - 6, y: y(first.step) + 4, class: "tick end" }, String(first.step)),
    svg("text", { x: pad.left - 6, y: y(last.step) + 4, class: "tick end" }, String(last.step)),
    svg("text", { x: pad.left, y: H - 8, class: "tick" }, clock(first.time)),
    svg("text", { x: W - pad.right, y: H - 8, class: "tick end" }, clock(last.time)),
  ];
}

function pointShape(point, cx, cy, radius) {
  return svg("circle", {
    cx: cx.toFixed(1),
    cy: cy.toFixed(1),
    r: radius.toFixed(2),
    class: `pt ${attemptClass(point.attempt)}${view.picks.includes(point.step) ? " picked" : ""}`,
    "data-step": point.step,
    "data-attempt": point.attempt,
  }, svg("title", {}, `step ${point.step} · attempt ${point.attempt} · ${clock(point.time)}`));
}

function nearestPoint(chart, event, points, x, y) {
  const matrix = chart.getScreenCTM();
  if (!matrix) return null;
  const at = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
  let best = null;
  let bestDistance = Infinity;
  for (const point of points) {
    const distance = Math.hypot(x(point.time) - at.x, y(point.step) - at.y);
    if (distance < bestDistance) [best, bestDistance] = [point, distance];
  }
  return bestDistance <= 24 ? best : null;
}

function renderLegend(points) {
  const counts = new Map();
  for (const point of points) counts.set(point.attempt, (counts.get(point.attempt) || 0) + 1);
  const items = [...counts.entries()].sort((a, b) => a[0] - b[0]).map(([attempt, count]) =>
    el("span", { class: "key", "data-attempt": attempt },
      el("span", { class: `swatch ${attemptClass(attempt)}` }), `attempt ${attempt}: ${count}`));
  $("t-legend").replaceChildren(...items);
}

function renderEvents(events) {
  const rows = events.map((entry) => el("tr", { class: entry.kind, "data-kind": entry.kind },
    el("td", {}, clock(entry.at)),
    el("td", {}, entry.kind),
    el("td", { class: "num" }, entry.attempt ? String(entry.attempt) : ""),
    el("td", { class: "num" }, entry.step !== null && entry.step !== undefined ? String(entry.step) : ""),
    el("td", { title: entry.detail || "" }, entry.text)));
  $("t-events").tBodies[0].replaceChildren(...rows);
}

// ---------------------------------------------------------------------------------------------------
// A checkpoint's state, fetched on click; the last two points clicked fill the diff form

async function pick(step) {
  const current = view;
  current.picks = current.picks.concat([step]).slice(-2);
  if (current.picks.length === 2) $("d-from").value = String(Math.min(...current.picks));
  $("d-to").value = String(current.picks.length === 2 ? Math.max(...current.picks) : step);
  for (const node of document.querySelectorAll("circle.picked")) node.classList.remove("picked");
  for (const picked of current.picks) {
    const node = document.querySelector(`circle[data-step="${picked}"]`);
    if (node) node.classList.add("picked");
  }
  try {
    const body = await getJSON(viewUrl(current.ref, "state", { step }));
    if (view === current) showState(step, body);
  } catch (err) {
    showError(err);
  }
}

function showState(step, body) {
  const state = "state" in body ? body.state : body;
  let text = JSON.stringify(state, null, 2);
  if (text.length > MAX_STATE_CHARS) text = `${text.slice(0, MAX_STATE_CHARS)}\n… (${text.length} characters in all)`;
  const facts = [`step ${body.step ?? step}`];
  if (body.attempt) facts.push(`attempt ${body.attempt}`);
  if (body.timestamp) facts.push(clock(body.timestamp));
  if (body.sizeBytes !== undefined) facts.push(`${body.sizeBytes} bytes`);
  $("s-title").textContent = `State at ${facts.join(" · ")}`;
  $("s-body").textContent = text;
  $("t-state").hidden = false;
}

function onDiff(event) {
  event.preventDefault();
  if (!view) return;
  location.hash = executionHash(view.ref, "diff", $("d-from").value, $("d-to").value);
}

// ---------------------------------------------------------------------------------------------------
// The diff of two steps: the view API's, or (where it has none) worked out here from the two states

async function openDiff(ref, from, to) {
  $("diff-view").hidden = false;
  $("dv-title").textContent = `${ref.namespace}/${ref.name}: step ${from} → step ${to}`;
  $("dv-back").setAttribute("href", executionHash(ref));
  $("dv-from").textContent = String(from);
  $("dv-to").textContent = String(to);
  $("dv-changes").tBodies[0].replaceChildren();
  $("dv-summary").textContent = "loading…";
  try {
    const changes = await fetchDiff(ref, from, to);
    renderDiff(changes);
  } catch (err) {
    $("dv-summary").textContent = "";
    showError(err);
  }
}

const BEFORE_MAX_BYTES = 1 << 20;

// The view API's JSON Patch from step A's state to step B's. A patch has no old values: they are read
// from step A's state, fetched too when it is small (under BEFORE_MAX_BYTES).
async function fetchDiff(ref, from, to) {
  const body = await getJSON(viewUrl(ref, "diff", { from, to }));
  let before;
  if ((body.from || {}).sizeBytes <= BEFORE_MAX_BYTES) {
    before = (await getJSON(viewUrl(ref, "state", { step: from }))).state;
  }
  const changes = (body.operations || []).map((op) => ({
    path: op.path,
    op: op.op,
    before: before === undefined || op.op === "add" ? undefined : pointer(before, op.path),
    after: op.op === "remove" ? undefined : op.value,
  }));
  return { changes, truncated: Boolean(body.truncated) };
}

// The value at a JSON Pointer (RFC 6901) in ``doc``; undefined where there is none.
function pointer(doc, path) {
  let node = doc;
  for (const raw of path.split("/").slice(1)) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (node === null || typeof node !== "object" || !(key in node)) return undefined;
    node = node[key];
  }
  return node;
}

function renderDiff({ changes, truncated }) {
  const counted = changes.length === 1 ? "1 change" : `${changes.length} changes`;
  $("dv-summary").textContent = truncated ? `${counted} (cut short by the view API)` : counted;
  const rows = changes.map((c) => el("tr", { class: `change ${c.op}`, "data-path": c.path },
    el("td", {}, el("code", {}, c.path)),
    el("td", {}, c.op),
    el("td", {}, el("code", {}, short(c.before))),
    el("td", {}, el("code", {}, short(c.after)))));
  $("dv-changes").tBodies[0].replaceChildren(...rows);
}

// ---------------------------------------------------------------------------------------------------

function start() {
  $("filters").addEventListener("submit", onFilter);
  $("list-more").addEventListener("click", () => {
    list.pages += 1;
    refreshList().catch(showError);
  });
  $("diff-form").addEventListener("submit", onDiff);
  $("p-first").addEventListener("click", () => goToPage("first"));
  $("p-prev").addEventListener("click", () => goToPage("prev"));
  $("p-next").addEventListener("click", () => goToPage("next"));
  $("p-latest").addEventListener("click", () => goToPage("latest"));
  $("p-size").addEventListener("change", () => goToPage(view && view.follow ? "latest" : "first"));
  window.addEventListener("hashchange", route);
  route();
}

start();
