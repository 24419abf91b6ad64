// cxguard supervisor console: one tenant's calls, transcripts, alerts, handoffs and rates.
// No framework and no build step; every value is put in the page with textContent, never
// as HTML, so nothing a caller said can run here.
"use strict";

const state = { calls: new Map(), alerts: new Map(), handoffs: new Map(), rates: null,
                selected: null, ws: null, retry: 500 };
// When each alert was first drawn (ms since epoch): the browser test and the latency
// benchmark read it.
window.cxguardShown = {};

const params = new URLSearchParams(location.search);
const token = params.get("token") || sessionStorage.getItem("cxguard-console-token") || "";
if (params.get("token")) {
  sessionStorage.setItem("cxguard-console-token", token);
  history.replaceState(null, "", location.pathname); // keep the token out of the address bar
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function clock(epochS) {
  return epochS ? new Date(epochS * 1000).toLocaleTimeString() : "";
}
function $(id) { return document.getElementById(id); }

// ------------------------------------------------------------------ applying updates

function applySnapshot(s) {
  state.calls.clear(); state.alerts.clear(); state.handoffs.clear();
  $("tenant").textContent = "tenant " + s.tenant;
  for (const c of s.calls) state.calls.set(c.call_id, {...c, turns: new Map(c.turns.map(t => [t.index, t]))});
  for (const a of [...s.alerts].reverse()) state.alerts.set(a.alert_id, a);
  for (const h of [...s.handoffs].reverse()) state.handoffs.set(h.key, h);
  state.rates = s.rates;
  renderAll();
}

function apply(u) {
  switch (u.type) {
    case "snapshot": applySnapshot(u); return;
    case "call": {
      const old = state.calls.get(u.call.call_id);
      state.calls.set(u.call.call_id, {...u.call, turns: old ? old.turns : new Map()});
      renderCalls(); return;
    }
    case "turn": {
      let c = state.calls.get(u.call_id);
      if (!c) { c = {call_id: u.call_id, turns: new Map(), live: true}; state.calls.set(u.call_id, c); }
      c.turns.set(u.turn.index, u.turn);
      renderCalls(); if (shownCall() === u.call_id) renderTranscript(); return;
    }
    case "alert":
      if (!state.alerts.has(u.alert.alert_id)) { state.alerts.set(u.alert.alert_id, u.alert); renderAlerts(); }
      return;
    case "action": {
      const a = state.alerts.get(u.alert_id);
      if (a && !a.actions.some(x => x.action_id === u.action.action_id)) {
        a.actions.push(u.action);
        if (u.action.action === "acknowledge") a.status = "acknowledged";
        if (u.action.action === "assign") a.assignee = u.action.assignee;
        renderAlerts();
      }
      return;
    }
    case "handoff": state.handoffs.set(u.handoff.key, u.handoff); renderHandoffs(); return;
    case "rates": state.rates = u.rates; renderRates(); return;
    case "acted": return;
    case "error": $("link").textContent = "refused: " + u.error; return;
  }
}

// ------------------------------------------------------------------ drawing

function shownCall() {
  if (state.selected && state.calls.has(state.selected)) return state.selected;
  const calls = [...state.calls.values()];
  const live = calls.filter(c => c.live);
  const pick = (live.length ? live : calls).at(-1);
  return pick ? pick.call_id : null;
}

function renderAll() { renderCalls(); renderTranscript(); renderAlerts(); renderHandoffs(); renderRates(); }

function renderCalls() {
  const body = $("calls").tBodies[0];
  body.replaceChildren();
  const current = shownCall();
  for (const c of [...state.calls.values()].reverse()) {
    const tr = el("tr"); tr.dataset.callId = c.call_id;
    if (c.call_id === current) tr.className = "selected";
    tr.append(el("td", "assertion", c.call_id), el("td", "", c.source), el("td", "", clock(c.started)));
    const spk = el("td");
    for (const s of c.speaking || []) spk.append(el("span", "tag speaking", s));
    tr.append(spk, el("td", "", c.intent || "—"),
      el("td", "", c.authenticated === true ? "yes" : c.authenticated === false ? "no" : "—"));
    const st = el("td"); st.append(el("span", c.live ? "tag live" : "tag", c.live ? "live" : (c.end_reason || "ended")));
    tr.append(st);
    tr.addEventListener("click", () => { state.selected = c.call_id; renderCalls(); renderTranscript(); });
    body.append(tr);
  }
}

function renderTranscript() {
  const id = shownCall(), list = $("transcript");
  $("transcript-call").textContent = id || "";
  list.replaceChildren();
  const c = id && state.calls.get(id);
  if (!c) return;
  for (const t of [...c.turns.values()].sort((a, b) => a.index - b.index)) {
    const li = el("li", t.speaker); li.dataset.turn = t.index;
    li.append(el("span", "spk", t.speaker), el("span", "text", t.text || (t.undetermined_reason ? "[" + t.undetermined_reason + "]" : "")));
    for (const [outcome, ids] of Object.entries(t.outcomes || {}))
      for (const a of ids) li.append(" ", el("span", "tag " + outcome, a));
    list.append(li);
  }
  list.scrollTop = list.scrollHeight;
}

function act(alertId, action, extra) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  const by = $("who").value || localStorage.getItem("cxguard-supervisor") || "";
  state.ws.send(JSON.stringify({op: "act", alert_id: alertId, action, by, ...extra}));
}

function renderAlerts() {
  const list = $("alerts"), now = Date.now();
  list.replaceChildren();
  for (const a of [...state.alerts.values()].reverse()) {
    if (!(a.alert_id in window.cxguardShown)) window.cxguardShown[a.alert_id] = now;
    const li = el("li", [a.kind, a.outcome, a.status].join(" ")); li.dataset.alertId = a.alert_id;
    const head = el("div", "alert-head");
    head.append(el("span", "tag sev-" + a.severity, a.severity), el("span", "tag " + a.outcome, a.kind),
      el("span", "assertion", (a.assertions || [a.assertion]).join(", ")),
      el("span", "sub", "call " + a.call_id + " · turn " + a.turn + " · " + clock(a.decided_at)));
    if (a.status === "acknowledged") head.append(el("span", "tag live", "acknowledged"));
    if (a.assignee) head.append(el("span", "tag", "→ " + a.assignee));
    li.append(head, el("div", "evidence", a.evidence));
    if (a.text) li.append(el("div", "said", "“" + a.text + "”"));
    const row = el("div", "actions"), note = el("input"); note.placeholder = "comment or assignee";
    const ack = el("button", "ack", "Acknowledge"), asg = el("button", "assign", "Assign"),
      com = el("button", "comment", "Comment");
    ack.addEventListener("click", () => act(a.alert_id, "acknowledge", {note: note.value}));
    asg.addEventListener("click", () => act(a.alert_id, "assign", {assignee: note.value || $("who").value}));
    com.addEventListener("click", () => { if (note.value) act(a.alert_id, "comment", {note: note.value}); });
    row.append(ack, asg, com, note); li.append(row);
    if (a.actions.length) {
      const h = el("ul", "history");
      for (const x of a.actions)
        h.append(el("li", "", clock(x.at_wall) + " " + x.by + " " + x.action + (x.assignee ? " → " + x.assignee : "") + (x.note ? ": " + x.note : "")));
      li.append(h);
    }
    list.append(li);
  }
}

function renderHandoffs() {
  const body = $("handoffs").tBodies[0];
  body.replaceChildren();
  for (const h of [...state.handoffs.values()].reverse()) {
    const tr = el("tr"); tr.dataset.key = h.key;
    const targets = Object.entries(h.sinks || {}).map(([k, v]) => k + ": " + v).join(", ");
    tr.append(el("td", "assertion", h.call_id), el("td", "", h.assertion || ""),
      el("td", "", h.state), el("td", "", targets || "—"));
    body.append(tr);
  }
}

function counts(c) {
  c = c || {};
  return (c.pass || 0) + " / " + (c.fail || 0) + " / " + (c.undetermined || 0);
}

function driftText(d) {
  const pct = x => Math.round(100 * x) + " %";
  return "pass rate " + d.direction + " " + pct(d.baseline_rate) + " → " + pct(d.recent_rate);
}

function renderRates() {
  const body = $("rates").tBodies[0], r = state.rates || {hour: {}, day: {}, drift: []};
  body.replaceChildren();
  const drift = new Map((r.drift || []).map(d => [d.assertion_id, d]));
  for (const id of Object.keys(r.day || {}).sort()) {
    const d = r.day[id], judged = (d.pass || 0) + (d.fail || 0) + (d.undetermined || 0);
    const tr = el("tr"); tr.dataset.assertion = id;
    tr.append(el("td", "assertion", id), el("td", "", counts(r.hour[id])), el("td", "", counts(d)),
      el("td", "", judged ? Math.round(100 * (d.fail || 0) / judged) + " %" : "—"),
      el("td", drift.has(id) ? "drift" : "", drift.has(id) ? driftText(drift.get(id)) : ""));
    body.append(tr);
  }
}

// ------------------------------------------------------------------ the live link

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(scheme + "//" + location.host + "/console/live?token=" + encodeURIComponent(token));
  state.ws = ws;
  ws.onopen = () => { $("link").textContent = "live"; $("link").className = "pill on"; state.retry = 500; };
  ws.onmessage = ev => apply(JSON.parse(ev.data));
  ws.onclose = () => {
    $("link").textContent = "reconnecting…"; $("link").className = "pill off";
    setTimeout(connect, state.retry); state.retry = Math.min(10000, state.retry * 2);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const who = $("who");
  who.value = localStorage.getItem("cxguard-supervisor") || "";
  who.addEventListener("change", () => localStorage.setItem("cxguard-supervisor", who.value));
  connect();
});
