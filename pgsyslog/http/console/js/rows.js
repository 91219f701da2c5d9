// The results table: one <tr data-row-id> per row, newest at the top.

import { h } from "./dom.js";
import { localTime, severityLabel } from "./format.js";

export function severityBadge(severity) {
  return h("span", { class: `sev sev-${severity}` }, severityLabel(severity));
}

export function rowElement(row, onOpen) {
  const open = () => onOpen(row);
  return h("tr", { "data-row-id": row.id, tabindex: 0, onclick: open,
    onkeydown: (event) => { if (event.key === "Enter") open(); } },
  h("td", { class: "time", title: row.received_at }, localTime(row.received_at)),
  h("td", { class: "host" }, row.hostname ?? ""),
  h("td", { class: "app" }, row.app_name ?? ""),
  h("td", { class: "sev" }, severityBadge(row.severity)),
  h("td", { class: "msg" }, row.message));
}

// The rows shown, by id, so that a row comes once whatever the stream or page repeats.
export class RowTable {
  constructor(tbody, onOpen) {
    this.tbody = tbody;
    this.onOpen = onOpen;
    this.shown = new Map();
  }

  get size() { return this.shown.size; }

  clear() {
    this.tbody.replaceChildren();
    this.shown.clear();
  }

  append(rows) {
    const fresh = rows.filter((row) => !this.shown.has(row.id));
    const elements = fresh.map((row) => this.remember(row));
    this.tbody.append(...elements);
    return fresh.length;
  }

  // rows in the order they came (oldest first): each new one goes on top.
  prepend(rows) {
    const fresh = rows.filter((row) => !this.shown.has(row.id));
    const elements = fresh.map((row) => this.remember(row)).reverse();
    this.tbody.prepend(...elements);
    return fresh.length;
  }

  trim(limit) {
    while (this.shown.size > limit && this.tbody.lastElementChild) {
      const last = this.tbody.lastElementChild;
      this.shown.delete(Number(last.dataset.rowId));
      last.remove();
    }
  }

  remember(row) {
    const element = rowElement(row, this.onOpen);
    this.shown.set(row.id, element);
    return element;
  }
}
