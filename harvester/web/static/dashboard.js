// harvester dashboard: one WebSocket (/ws), plain DOM and SVG, no dependencies, works offline.
// The server sends "hello" (history, latest signals and alerts, health) on connect, then "counters"
// every push interval and "signal" / "alert" as they happen. On a drop the page reconnects with a
// growing pause and rebuilds its view from the next hello.
"use strict";

const MAX_POINTS = 120;
const MAX_ITEMS = 30;
const state = { rules: [], volume: {}, sentiment: {}, sources: {} };
let retry = 0;
// Alert messages link to /?rule=<name> (alerts.dashboard_url): that rule's card is outlined.
const focusRule = new URLSearchParams(location.search).get("rule");

const $ = (sel) => document.querySelector(sel);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return new Date(iso).toLocaleString();
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 60) return `${value.toFixed(1)} s`;
  if (value < 3600) return `${(value / 60).toFixed(1)} min`;
  return `${(value / 3600).toFixed(1)} h`;
}

// -- sparklines ------------------------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";

function sparkline(cls, values, lo, hi, zeroLine) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", cls);
  svg.setAttribute("viewBox", `0 0 ${MAX_POINTS} 34`);
  svg.setAttribute("preserveAspectRatio", "none");
  const y = (v) => 32 - ((v - lo) / Math.max(hi - lo, 1e-9)) * 30;
  if (zeroLine) {
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", "0"); line.setAttribute("x2", String(MAX_POINTS));
    line.setAttribute("y1", String(y(0))); line.setAttribute("y2", String(y(0)));
    svg.appendChild(line);
  }
  const offset = MAX_POINTS - values.length;
  const points = [];
  values.forEach((v, i) => { if (v !== null) points.push(`${offset + i},${y(v).toFixed(1)}`); });
  const poly = document.createElementNS(SVG, "polyline");
  poly.setAttribute("points", points.join(" "));
  svg.appendChild(poly);
  return svg;
}

function push(series, rule, value) {
  const list = series[rule] || (series[rule] = []);
  list.push(value);
  if (list.length > MAX_POINTS) list.splice(0, list.length - MAX_POINTS);
}

function addCounters(message) {
  for (const rule of state.rules) {
    const c = message.rules[rule] || { posts: 0, sentiment: null };
    push(state.volume, rule, c.posts);
    push(state.sentiment, rule, c.sentiment);
  }
  for (const [name, s] of Object.entries(message.sources || {})) {
    state.sources[name] = Object.assign(state.sources[name] || {}, s);
  }
}

function drawRules() {
  const box = $("#rules");
  box.replaceChildren();
  for (const rule of state.rules) {
    const vol = state.volume[rule] || [];
    const sent = state.sentiment[rule] || [];
    const last = vol.length ? vol[vol.length - 1] : 0;
    const peak = Math.max(1, ...vol);
    const card = el("div", "rule");
    card.dataset.rule = rule;
    if (rule === focusRule) card.classList.add("focus");
    if (vol.length > 5 && last > 3 * (vol.slice(0, -1).reduce((a, b) => a + b, 0) / (vol.length - 1) + 1)) {
      card.classList.add("hot");
    }
    const head = el("div", "name");
    head.append(el("span", "", rule), el("span", "muted", `${last} · ${fmtSent(sent[sent.length - 1])}`));
    card.append(head, sparkline("vol", vol, 0, peak, false), sparkline("sent", sent, -1, 1, true));
    box.appendChild(card);
  }
}

function fmtSent(v) {
  return v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + v.toFixed(2);
}

// -- sources and overall health ---------------------------------------------------------------------
function drawSources() {
  const body = $("#sources tbody");
  body.replaceChildren();
  for (const [name, s] of Object.entries(state.sources)) {
    const row = el("tr");
    row.dataset.source = name;
    row.append(
      el("td", "", name),
      el("td", `state-${s.state}`, s.state),
      el("td", "", s.posts_per_minute ?? "–"),
      el("td", "", s.posts ?? "–"),
      el("td", "", seconds(s.last_post_age_s)),
      el("td", "", s.reconnects ?? 0),
      el("td", "error", s.last_error || ""),
    );
    body.appendChild(row);
  }
}

function showHealth(health) {
  const pill = $("#overall");
  pill.textContent = health.status;
  pill.className = `pill ${health.status}`;
  pill.title = (health.problems || []).join("\n");
  $("#uptime").textContent = `up ${seconds(health.uptime_s)}`;
  for (const [name, s] of Object.entries(health.sources || {})) {
    state.sources[name] = Object.assign(state.sources[name] || {}, s);
  }
  drawSources();
}

async function refreshHealth() {
  try {
    const response = await fetch("/health", { credentials: "same-origin" });
    if (response.ok || response.status === 503) showHealth(await response.json());
  } catch (err) {
    // the WebSocket's status pill already says the daemon is unreachable
  }
}

// -- signals and alerts ---------------------------------------------------------------------------
function prepend(list, item, fresh) {
  const empty = list.querySelector(".empty");
  if (empty) empty.remove();
  if (fresh) item.classList.add("new");
  list.prepend(item);
  while (list.children.length > MAX_ITEMS) list.lastElementChild.remove();
}

function signalItem(sig) {
  const item = el("li", `signal sev-${sig.severity}`);
  item.dataset.signalId = sig.id;
  const head = el("div", "head");
  head.append(el("span", `sev sev-${sig.severity}`, sig.severity), el("strong", "", sig.rule),
    el("span", "muted", sig.kind), el("span", "when muted", ago(sig.at)));
  item.append(head, el("div", "summary", sig.summary));
  if (sig.examples && sig.examples.length) {
    const ex = el("ul", "examples");
    for (const post of sig.examples.slice(0, 3)) ex.appendChild(el("li", "", `${post.author}: ${post.text}`));
    item.appendChild(ex);
  }
  return item;
}

function alertItem(alert) {
  const item = el("li", `alert sev-${alert.severity || "info"}`);
  item.dataset.alertKey = alert.key;
  const head = el("div", "head");
  head.append(el("span", "sev", alert.status), el("strong", "", alert.rule || alert.signal_id),
    el("span", "muted", `→ ${alert.sink}`), el("span", "when muted", ago(alert.created_at)));
  item.append(head, el("div", "summary", alert.summary || ""));
  return item;
}

// -- the connection --------------------------------------------------------------------------------
function onMessage(message) {
  switch (message.type) {
    case "hello": {
      state.rules = message.rules;
      state.volume = {}; state.sentiment = {};
      for (const counters of message.history) addCounters(counters);
      $("#signals").replaceChildren(el("li", "empty muted", "no signal yet"));
      $("#alerts").replaceChildren(el("li", "empty muted", "no alert yet"));
      for (const sig of message.signals) prepend($("#signals"), signalItem(sig), false);
      for (const alert of message.alerts) prepend($("#alerts"), alertItem(alert), false);
      showHealth(message.health);
      drawRules();
      break;
    }
    case "counters":
      addCounters(message);
      drawRules();
      drawSources();
      break;
    case "signal":
      prepend($("#signals"), signalItem(message.signal), true);
      break;
    case "alert":
      prepend($("#alerts"), alertItem(message.alert), true);
      break;
    default:
      break;
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  const status = $("#connection");
  ws.onopen = () => { retry = 0; status.textContent = "live"; status.className = "pill ok"; };
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = (event) => {
    const pause = Math.min(10000, 500 * 2 ** retry++);
    status.textContent = event.code === 4008 ? "too slow, reconnecting" : "reconnecting";
    status.className = "pill off";
    setTimeout(connect, pause);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  connect();
  setInterval(refreshHealth, 10000);
});
