// Live dashboard: renders /api/events (server-sent events) into the page.
"use strict";

const FIELDS = ["connections_open", "connections_total", "bytes_in", "bytes_out", "errors"];
const MAX_EVENTS = 200;

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function duration(secs) {
  const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
}

function renderStatus(status) {
  const body = document.getElementById("services");
  body.replaceChildren();
  for (const service of status.services) {
    const row = document.createElement("tr");
    row.dataset.service = service.name;
    row.append(cell(service.name));
    row.append(cell(service.endpoints.map(e => e.protocol + " " + e.address).join(", ")));
    row.append(cell(service.state, "state-" + service.state));
    for (const field of FIELDS) {
      const value = service.counters[field];
      const td = cell(field.startsWith("bytes") ? bytes(value) : String(value), "num");
      td.dataset.field = field;
      td.dataset.value = String(value);
      row.append(td);
    }
    body.append(row);
  }
  document.getElementById("uptime").textContent = duration(status.uptime_secs);
}

function addEvent(event) {
  const list = document.getElementById("events");
  const item = document.createElement("li");
  const at = new Date(event.at * 1000).toLocaleTimeString();
  item.textContent = at + "  " + event.service + "  " + event.kind + "  " + event.detail;
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { live.textContent = "live"; });
  source.addEventListener("status", e => renderStatus(JSON.parse(e.data)));
  source.addEventListener("event", e => addEvent(JSON.parse(e.data)));
  source.addEventListener("error", () => { live.textContent = "reconnecting…"; });
}

fetch("/api/status").then(r => r.json()).then(renderStatus).catch(() => {});
connect();
