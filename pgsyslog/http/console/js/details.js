// The panel of one row: every stored field, structured data as a table, raw bytes, context.

import { getJson } from "./api.js";
import { h, show } from "./dom.js";
import { decodeRaw, facilityLabel, localTime, severityLabel } from "./format.js";
import { severityBadge } from "./rows.js";

const FIELDS = [
  ["id", "Id"], ["received_at", "Received"], ["event_time", "Event time"],
  ["hostname", "Host"], ["app_name", "App"], ["procid", "Proc id"], ["msgid", "Msg id"],
  ["severity", "Severity"], ["facility", "Facility"], ["message", "Message"],
  ["format", "Format"], ["transport", "Transport"], ["source_ip", "Source"],
  ["peer_name", "Peer"], ["parse_error", "Parse error"],
];

function fieldValue(row, key) {
  const value = row[key];
  if (value === null || value === undefined) return h("span", { class: "null" }, "—");
  if (key === "severity") return h("span", {}, severityBadge(value), ` (${value})`);
  if (key === "facility") return `${facilityLabel(value)} (${value})`;
  if (key === "received_at" || key === "event_time") return `${localTime(value)}   ${value}`;
  return String(value);
}

function sdRows(structured) {
  const rows = [];
  for (const [sdId, params] of Object.entries(structured ?? {})) {
    const entries = Object.entries(params ?? {});
    if (!entries.length) rows.push(h("tr", {}, h("td", {}, sdId), h("td"), h("td")));
    for (const [name, value] of entries) {
      const values = Array.isArray(value) ? value : [value];
      for (const one of values) rows.push(h("tr", {}, h("td", {}, sdId), h("td", {}, name), h("td", {}, one)));
    }
  }
  return rows;
}

function contextRow(row, current) {
  return h("tr", { class: row.id === current ? "current" : null, "data-context-id": row.id },
    h("td", { class: "time" }, localTime(row.received_at)), h("td", { class: "sev" }, severityBadge(row.severity)),
    h("td", { class: "app" }, row.app_name ?? ""), h("td", { class: "msg" }, row.message));
}

export class Details {
  constructor(panel, onError) {
    this.panel = panel;
    this.onError = onError;
    this.row = null;
    panel.querySelector("[data-action=close]").addEventListener("click", () => this.close());
    panel.querySelector("[data-action=context]").addEventListener("click", () => this.context());
  }

  open(row) {
    this.row = row;
    const $ = (selector) => this.panel.querySelector(selector);
    $("#details-id").textContent = row.id;
    $("#details-fields").replaceChildren(...FIELDS.map(([key, name]) =>
      h("tr", { "data-field": key }, h("th", {}, name), h("td", {}, fieldValue(row, key)))));
    const sd = sdRows(row.structured_data);
    $("#details-sd tbody").replaceChildren(...sd);
    show($("#details-sd"), sd.length > 0);
    $("#details-raw pre").textContent = row.raw ? decodeRaw(row.raw) : "";
    show($("#details-raw"), Boolean(row.raw));
    show($("#details-context"), false);
    show(this.panel, true);
    this.panel.scrollTop = 0;
  }

  close() {
    show(this.panel, false);
    this.row = null;
  }

  async context() {
    const row = this.row;
    if (!row) return;
    const params = new URLSearchParams({ id: row.id, before: 20, after: 20 });
    try {
      const answer = await getJson("/api/context", params);
      if (this.row !== row) return;
      const rows = [...answer.before, answer.row, ...answer.after];
      this.panel.querySelector("#details-context tbody").replaceChildren(
        ...rows.map((r) => contextRow(r, row.id)));
      show(this.panel.querySelector("#details-context"), true);
    } catch (error) {
      this.onError(`Context: ${error.message}`);
    }
  }
}
