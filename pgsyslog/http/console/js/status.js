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

function countTable(title, entries) {
  const rows = entries.map(([name, n]) =>
    h("tr", {}, h("td", {}, name ?? "(none)"), h("td", { class: "num" }, count(n))));
  return h("div", { class: "top" }, h("h3", {}, title), h("table", { class: "kv" }, h("tbody", {}, ...rows)));
}

// `top` is what `pgsyslog stats -o json` prints for the last 24 hours.
function renderTop(top) {
  const rate = (perSecond) => (perSecond === null || perSecond === undefined ? "—" : `${(perSecond * 60).toFixed(1)}/min`);
  definitions($("#top dl"), [
    ["Rows", count(top.rows), "rows"],
    ["Rate, last minute", rate(top.rows_per_second_last_minute), "rate_minute"],
    ["Rate, last hour", rate(top.rows_per_second_last_hour), "rate_hour"],
  ]);
  $("#top div").replaceChildren(
    countTable("By severity", Object.entries(top.by_severity ?? {})),
    countTable("Top hosts", (top.top_hosts ?? []).map((e) => [e.hostname, e.rows])),
    countTable("Top apps", (top.top_apps ?? []).map((e) => [e.app_name, e.rows])));
}

function retention(days) {
  if (days === null || days === undefined) return "—";
  return days ? `${days} days` : "kept forever";
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
    ["Retention", retention(stats.retention_days), "retention"],
  ]);
  $("#counters tbody").replaceChildren(...Object.entries(stats.counters ?? {}).map(([name, value]) =>
    h("tr", { "data-counter": name }, h("th", {}, name), h("td", { class: "num" }, text(value)))));
  renderTop(stats.top ?? {});
}

function renderPartitions(answer) {
  $("#partitions tbody").replaceChildren(...answer.partitions.map((p) =>
    h("tr", { "data-partition": p.name }, h("td", {}, p.name), h("td", {}, p.day),
      h("td", { class: "num", title: "an estimate of PostgreSQL's statistics" }, `≈ ${count(p.rows)}`), h("td", { class: "num" }, bytes(p.bytes)),
      h("td", {}, p.expires ?? (answer.retention_days === 0 ? "never" : "—")))));
}

function duration(seconds) {
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

function ruleFilters(rule) {
  const filters = Object.entries(rule.filters ?? {}).map(([k, v]) => `${k}=${text(v)}`);
  return [rule.query ? `"${rule.query}"` : "", ...filters].filter(Boolean).join(" ") || "every row";
}

function condition(rule) {
  return rule.below !== null && rule.below !== undefined
    ? `fewer than ${rule.below}` : `${rule.threshold} or more`;
}

// The console's search for the rows an alert counts: its rule's words and filters over
// its window, narrowed to its group.
function searchLink(rule, alert) {
  const params = new URLSearchParams();
  if (rule?.query) params.set("q", rule.query);
  for (const [key, value] of Object.entries(rule?.filters ?? {})) {
    for (const one of Array.isArray(value) ? value : [value]) params.append(key, one);
  }
  if (alert.group && ["host", "app"].includes(rule?.group_by)) params.append(rule.group_by, alert.group);
  if (rule?.window) params.set("since", duration(rule.window));
  return `/?${params}`;
}

function renderAlerts(answer) {
  const firing = (answer.alerts ?? []).filter((a) => a.status === "firing");
  const rules = answer.rules ?? [];
  $("#alerts .note").textContent = !rules.length ? "No alert rules are configured ([[alert]] in the configuration file)."
    : firing.length ? "" : "No alert is firing.";
  for (const part of ["#alerts .firing", "#alerts .firing-title"]) show($(part), firing.length > 0);
  for (const part of ["#alerts .rules", "#alerts .rules-title"]) show($(part), rules.length > 0);
  $("#alerts .firing tbody").replaceChildren(...firing.map((a) =>
    h("tr", { "data-alert": a.rule },
      h("td", {}, h("a", { href: searchLink(rules.find((r) => r.name === a.rule), a) }, a.rule)),
      h("td", {}, a.group || "—"),
      h("td", { class: "bad" }, a.status), h("td", {}, localTime(a.started_at)),
      h("td", { class: "num" }, count(a.last_count)))));
  $("#alerts .rules tbody").replaceChildren(...rules.map((r) =>
    h("tr", { "data-rule": r.name }, h("td", {}, r.name), h("td", {}, ruleFilters(r)),
      h("td", {}, duration(r.window)), h("td", {}, condition(r)), h("td", {}, r.group_by ?? "—"))));
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
