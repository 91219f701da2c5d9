// The status page: ingest rate, health, store, counters, partitions and alerts, refreshed.

import { getJson } from "./api.js";
import { drawChart } from "./chart.js";
import { h, show } from "./dom.js";
import { bytes, count, localTime } from "./format.js";

const REFRESH_MS = 15_000;
const $ = (selector) => document.querySelector(selector);
let ingest = null;

function sectionError(section, error) {
  const line = section.querySelector(".error");
  if (!line) return;
  line.textContent = error ? error.message : "";
  show(line, Boolean(error));
}

function text(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return count(value);
  if (Array.isArray(value)) return value.map(text).join(", ") || "—";
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k}: ${text(v)}`).join("; ") || "—";
  return String(value);
}

function definitions(list, entries) {
  list.replaceChildren(...entries.flatMap(([name, value, key]) =>
    [h("dt", {}, name), h("dd", { "data-key": key ?? name }, value)]));
}

function renderHealth(health) {
  const ok = health?.status === "ok";
  definitions($("#health dl"), [
    ["Status", h("span", { class: ok ? "ok" : "bad" }, health?.status ?? "unknown"), "status"],
    ["Database", text(health?.database), "database"],
    ["Listening", text(health?.listening), "listening"],
    ["Listeners down", text(health?.listeners_down), "listeners_down"],
    ["Queue", text(health?.queue), "queue"],
    ...(health?.reason ? [["Reason", health.reason, "reason"]] : []),
  ]);
}

function topTable(name, entries) {
  const rows = (Array.isArray(entries) ? entries : Object.entries(entries ?? {}).map(
    ([value, n]) => ({ value, count: n }))).map((e) =>
    h("tr", {}, h("td", {}, e.label ?? e.value ?? e.name ?? text(e)), h("td", { class: "num" }, count(e.count ?? e.rows))));
  return h("div", { class: "top" }, h("h3", {}, name), h("table", { class: "kv" }, h("tbody", {}, ...rows)));
}

function renderStats(stats) {
  renderHealth(stats.health);
  ingest = { interval: "minute", buckets: stats.ingest_per_minute ?? [] };
  const total = ingest.buckets.reduce((sum, b) => sum + b.count, 0);
  $("#ingest-total").textContent = `${count(total)} in the last hour`;
  drawChart($("#ingest-chart"), ingest);
  definitions($("#store dl"), [
    ["Oldest row", localTime(stats.oldest) || "—", "oldest"],
    ["Newest row", localTime(stats.newest) || "—", "newest"],
    ["Retention", stats.retention_days ? `${stats.retention_days} days` : "kept forever", "retention"],
  ]);
  $("#counters tbody").replaceChildren(...Object.entries(stats.counters ?? {}).map(([name, value]) =>
    h("tr", { "data-counter": name }, h("th", {}, name), h("td", { class: "num" }, text(value)))));
  $("#top div").replaceChildren(...Object.entries(stats.top ?? {}).map(([name, entries]) => topTable(name, entries)));
}

function renderPartitions(answer) {
  $("#partitions tbody").replaceChildren(...answer.partitions.map((p) =>
    h("tr", { "data-partition": p.name }, h("td", {}, p.name), h("td", {}, p.day),
      h("td", { class: "num" }, count(p.rows)), h("td", { class: "num" }, bytes(p.bytes)),
      h("td", {}, p.expires ?? "never"))));
}

function renderAlerts(answer) {
  const firing = (answer.alerts ?? []).filter((a) => a.status !== "ok" && a.status !== "resolved");
  $("#alerts .note").textContent = firing.length ? "" : "No alert is firing.";
  $("#alerts .firing tbody").replaceChildren(...firing.map((a) =>
    h("tr", { "data-alert": a.rule }, h("td", {}, a.rule), h("td", {}, text(a.group)),
      h("td", { class: "bad" }, a.status), h("td", {}, localTime(a.started_at)),
      h("td", { class: "num" }, count(a.last_count)))));
  $("#alerts .rules tbody").replaceChildren(...(answer.rules ?? []).map((r) =>
    h("tr", { "data-rule": r.name }, h("td", {}, r.name), h("td", {}, text(r.query ?? r.filters)),
      h("td", {}, text(r.window)), h("td", {}, r.below ? `below ${text(r.threshold)}` : `${text(r.threshold)} or more`),
      h("td", {}, text(r.group_by)))));
  show($("#alerts"), true);
}

async function part(section, load, render) {
  try {
    render(await load());
    sectionError(section, null);
  } catch (error) {
    if (error.status !== 401) sectionError(section, error);
  }
}

async function refresh() {
  await Promise.all([
    part($("#ingest"), () => getJson("/api/stats"), renderStats),
    part($("#partitions"), () => getJson("/api/partitions"), renderPartitions),
    getJson("/api/alerts").then(renderAlerts, () => show($("#alerts"), false)),
  ]);
  $("#updated").textContent = `Updated ${localTime(new Date().toISOString())}; refreshed every ${REFRESH_MS / 1000} s.`;
  setTimeout(refresh, REFRESH_MS);
}

window.addEventListener("resize", () => { if (ingest) drawChart($("#ingest-chart"), ingest); });
show($("#alerts"), false);
refresh();
