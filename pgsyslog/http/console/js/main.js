// The search page: wires the form, the URL, the table, the chart, the facets and live mode.

import { getJson, logout } from "./api.js";
import { drawChart } from "./chart.js";
import { Details } from "./details.js";
import { show } from "./dom.js";
import { clearFacets, loadFacets } from "./facets.js";
import { FACILITIES, count, fromLocalInput, severityLabel, toLocalInput } from "./format.js";
import { LiveTail } from "./live.js";
import { LIST_KEYS, apiParams, fromSearch, isRelative, joinList, splitList, toSearch, withValue } from "./query.js";
import { RowTable } from "./rows.js";

const PAGE_ROWS = 100;
const MAX_LIVE_ROWS = 1000; // rows kept in the table while live; older ones leave at the bottom
const LIVE_REFRESH_MS = 15_000; // while live, the histogram and facets are asked again this often
const $ = (selector) => document.querySelector(selector);

const view = {
  state: fromSearch(location.search),
  next: null, // cursor of the next page of the search
  generation: 0, // answers of an older search are dropped
  live: null, // the LiveTail while live
  pending: [], // live rows held while scrolled away from the top
  pendingCount: 0,
  histogram: null,
  refresh: null, // the timer that refreshes histogram and facets while live
};

const search = $("#search");
const filters = $("#filters");
const table = new RowTable($("#results tbody"), (row) => details.open(row));
const details = new Details($("#details"), showError);

// One line at a time: the first failure of a search (its histogram and facets, given the
// same parameters, usually fail for the same reason).
function showError(message) {
  const box = $("#error");
  if (message && !box.hidden) return;
  box.textContent = message || "";
  show(box, Boolean(message));
}

// ------------------------------------------------------------------ state <-> form

function fillForm(state) {
  search.q.value = state.q;
  const preset = isRelative(state.since, state.until);
  if (preset && ![...search.range.options].some((o) => o.value === state.since)) {
    search.range.insertBefore(new Option(`Last ${state.since}`, state.since), search.range.lastElementChild);
  }
  search.range.value = preset ? state.since : "custom";
  show(filters.querySelector(".custom"), !preset);
  const local = (value) => {
    const t = value ? new Date(value) : null;
    return t && !Number.isNaN(t.getTime()) ? toLocalInput(t) : "";
  };
  filters.since.value = preset ? "" : local(state.since);
  filters.until.value = preset ? "" : local(state.until);
  for (const key of LIST_KEYS) filters[key].value = joinList(state[key]);
  for (const key of ["time", "facility"]) filters[key].value = state[key];
  setSeverity(state.severity);
  if (["procid", "msgid", "source", "peer"].some((key) => state[key].length) || state.time !== "received") {
    filters.querySelector("details.more").open = true;
  }
  const button = $("[data-action=live]");
  button.setAttribute("aria-pressed", String(state.live));
  button.classList.toggle("on", state.live);
}

function setSeverity(value) {
  const select = filters.severity;
  if (value && ![...select.options].some((o) => o.value === value)) {
    const [from, to] = value.split("..");
    const label = !value.includes("..") ? value : from === to ? `only ${from}` : `${from || "emerg"} to ${to || "debug"}`;
    select.append(new Option(label, value));
  }
  select.value = value;
}

function readForm() {
  const state = { ...view.state, q: search.q.value.trim() };
  for (const key of LIST_KEYS) state[key] = splitList(filters[key].value);
  for (const key of ["severity", "facility", "time"]) state[key] = filters[key].value.trim();
  if (search.range.value === "custom") {
    state.since = fromLocalInput(filters.since.value);
    state.until = fromLocalInput(filters.until.value);
  } else {
    state.since = search.range.value;
    state.until = "";
  }
  return state;
}

function apply(state) {
  view.state = state;
  history.replaceState(null, "", location.pathname + toSearch(state));
  fillForm(state);
  reload();
}

// ------------------------------------------------------------------ loading

function describeQuery(state) {
  const parts = [];
  if (state.q) parts.push(`“${state.q}”`);
  for (const key of LIST_KEYS) if (state[key].length) parts.push(`${key} ${state[key].join(" or ")}`);
  if (state.severity) parts.push(`severity ${state.severity}`);
  if (state.facility) parts.push(`facility ${state.facility}`);
  const range = isRelative(state.since, state.until) ? `the last ${state.since}` : state.since ? "the selected range" : "all time";
  return `${parts.length ? parts.join(", ") : "the filters"} in ${range}`;
}

function updateEmpty() {
  const empty = table.size === 0;
  $("#empty").textContent = view.state.live
    ? `No entries match ${describeQuery(view.state)} yet; new ones appear here as they arrive.`
    : `No entries match ${describeQuery(view.state)}.`;
  show($("#empty"), empty);
  show($("#results"), !empty);
}

async function loadPage(generation, cursor) {
  const params = apiParams(view.state);
  params.set("limit", PAGE_ROWS);
  if (cursor) params.set("cursor", cursor);
  const answer = await getJson("/api/search", params);
  if (generation !== view.generation) return;
  if (!cursor) table.clear();
  table.append(answer.rows);
  view.next = answer.next;
  show($("#more"), Boolean(answer.next));
  $("#more").disabled = false;
  updateEmpty();
}

async function loadHistogram(generation) {
  const answer = await getJson("/api/histogram", apiParams(view.state));
  if (generation !== view.generation) return;
  view.histogram = answer;
  $("#total").textContent = `${count(answer.total)} matching rows, by ${answer.interval}`;
  drawChart($("#histogram"), answer, zoom);
}

function zoom(since, until) {
  apply({ ...view.state, since: since.toISOString(), until: until.toISOString(), live: false });
}

function pickFacet(facet, entry) {
  const state = { ...view.state };
  if (facet === "severity") {
    const label = severityLabel(entry.value);
    state.severity = `${label}..${label}`;
  } else {
    state[facet] = withValue(state[facet], entry.value);
  }
  apply(state);
}

function settle(promise, what) {
  return promise.catch((error) => {
    if (error.status !== 401) showError(`${what}: ${error.message}`);
  });
}

function reload() {
  view.generation += 1;
  const generation = view.generation;
  showError("");
  stopLive();
  clearFacets($("#facets"));
  const page = loadPage(generation, null).catch((error) => {
    if (generation === view.generation) {
      table.clear();
      show($("#results"), false);
      show($("#empty"), false);
    }
    throw error;
  });
  settle(page, "Search").then(() => {
    if (generation === view.generation && view.state.live) startLive();
  });
  settle(loadHistogram(generation), "Histogram");
  settle(loadFacets($("#facets"), apiParams(view.state), pickFacet, () => generation === view.generation), "Facets");
}

// ------------------------------------------------------------------ live mode

function atTop() {
  const header = $(".bar").getBoundingClientRect().bottom;
  return $(".results").getBoundingClientRect().top >= header - 4;
}

function liveRows(rows) {
  if (!atTop()) {
    view.pending.push(...rows);
    view.pendingCount += rows.length;
    view.pending.splice(0, Math.max(0, view.pending.length - MAX_LIVE_ROWS));
    const button = $("#new-rows");
    button.textContent = `${count(view.pendingCount)} new ${view.pendingCount === 1 ? "row" : "rows"} — back to the top`;
    show(button, true);
    return;
  }
  table.prepend(rows);
  table.trim(MAX_LIVE_ROWS);
  updateEmpty();
}

function resumeLive() {
  if (!view.pending.length && !view.pendingCount) return;
  const rows = view.pending;
  view.pending = [];
  view.pendingCount = 0;
  show($("#new-rows"), false);
  liveRows(rows);
}

function liveState(status, reason = "") {
  const line = $("#live-status");
  line.textContent = {
    live: "Live: new rows appear at the top.",
    reconnecting: "Live: connection lost, reconnecting…",
    refused: `Live: the server refused the stream: ${reason}`,
  }[status] ?? "";
  line.dataset.status = status;
  show(line, true);
}

function startLive() {
  stopLive();
  view.live = new LiveTail(apiParams(view.state, { live: true }), { onRows: liveRows, onState: liveState });
  liveState("reconnecting");
  const generation = view.generation;
  view.refresh = setInterval(() => {
    settle(loadHistogram(generation), "Histogram");
    settle(loadFacets($("#facets"), apiParams(view.state), pickFacet, () => generation === view.generation), "Facets");
  }, LIVE_REFRESH_MS);
}

function stopLive() {
  if (view.live) view.live.stop();
  clearInterval(view.refresh);
  view.live = null;
  view.pending = [];
  view.pendingCount = 0;
  show($("#new-rows"), false);
  show($("#live-status"), false);
}

function toggleLive() {
  const state = { ...readForm(), live: !view.state.live };
  if (state.live && state.until) {
    state.until = "";
    if (!isRelative(state.since, "")) state.since = "1h";
  }
  apply(state);
}

// ------------------------------------------------------------------ events

function wire() {
  $("#results th.time").textContent = `Time (${Intl.DateTimeFormat().resolvedOptions().timeZone})`;
  const facilities = filters.facility;
  FACILITIES.forEach((name) => facilities.append(new Option(name, name)));
  search.addEventListener("submit", (event) => { event.preventDefault(); apply(readForm()); });
  filters.addEventListener("submit", (event) => { event.preventDefault(); apply(readForm()); });
  filters.addEventListener("change", () => apply(readForm()));
  search.range.addEventListener("change", () => {
    if (search.range.value === "custom") {
      const now = new Date();
      filters.since.value = toLocalInput(new Date(now - 3_600_000));
      filters.until.value = toLocalInput(now);
      show(filters.querySelector(".custom"), true);
    }
    apply(readForm());
  });
  $("[data-action=live]").addEventListener("click", toggleLive);
  $("#more").addEventListener("click", () => {
    $("#more").disabled = true;
    settle(loadPage(view.generation, view.next), "Load more");
  });
  $("#new-rows").addEventListener("click", () => {
    $(".results").scrollIntoView({ block: "start" });
    window.scrollTo({ top: 0 });
    resumeLive();
  });
  window.addEventListener("scroll", () => { if (view.live && atTop()) resumeLive(); }, { passive: true });
  window.addEventListener("resize", () => { if (view.histogram) drawChart($("#histogram"), view.histogram, zoom); });
  document.addEventListener("keydown", keys);
  if (localStorage.getItem("pgsyslog.session")) {
    const button = $("[data-action=logout]");
    show(button, true);
    button.addEventListener("click", () => { localStorage.removeItem("pgsyslog.session"); logout(); });
  }
}

function keys(event) {
  const typing = event.target.closest("input, textarea, select");
  if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    search.q.focus();
    search.q.select();
  } else if (event.key === "Escape" && !$("#details").hidden) {
    details.close();
  }
}

wire();
fillForm(view.state);
reload();
