// The view's state and the URL: what is searched, filtered, over which range, live or not.
// The URL uses the API's own parameter names, so a link from an alert (?q=..&app=..) opens here.

export const LIST_KEYS = ["host", "app", "procid", "msgid", "source", "peer"];
export const TEXT_KEYS = ["q", "severity", "facility", "since", "until", "time"];
export const DEFAULT_SINCE = "24h";

export function emptyState() {
  const state = { live: false };
  for (const key of TEXT_KEYS) state[key] = "";
  for (const key of LIST_KEYS) state[key] = [];
  state.since = DEFAULT_SINCE;
  state.time = "received";
  return state;
}

export function fromSearch(search) {
  const params = new URLSearchParams(search);
  const state = emptyState();
  for (const key of TEXT_KEYS) if (params.has(key)) state[key] = params.get(key).trim();
  for (const key of LIST_KEYS) state[key] = params.getAll(key).map((v) => v.trim()).filter(Boolean);
  if (!params.has("since") && params.has("until")) state.since = "";
  if (!state.time) state.time = "received";
  state.live = ["1", "true", "on", "yes"].includes((params.get("live") || "").toLowerCase());
  return state;
}

// The filter parameters the API takes (no paging, no live flag).
export function apiParams(state, { live = false } = {}) {
  const params = new URLSearchParams();
  for (const key of TEXT_KEYS) {
    const value = state[key];
    if (!value) continue;
    if (key === "time" && value === "received") continue;
    if (live && (key === "since" || key === "until")) continue;
    params.set(key, value);
  }
  for (const key of LIST_KEYS) for (const value of state[key]) params.append(key, value);
  return params;
}

export function toSearch(state) {
  const params = apiParams(state);
  if (!state.since) params.delete("since");
  if (state.live) params.set("live", "1");
  const text = params.toString();
  return text ? `?${text}` : "";
}

// A time relative to now ("3h", "90m") that the API reads itself, not a point in time.
export function isRelative(since, until) {
  return Boolean(since) && !until && !/^\d{4}-/.test(since);
}

// A list in one input: values apart by commas; a value that holds a comma or a quote (or
// starts or ends with a space) is written in double quotes, a quote in it doubled, as CSV has
// it. 'web1, "host,with,commas"' <-> ["web1", "host,with,commas"].
const LIST_ITEM = /\s*(?:"((?:[^"]|"")*)"|([^,]*?))\s*(?:,|$)/y;

export function splitList(text) {
  const values = [];
  LIST_ITEM.lastIndex = 0;
  while (LIST_ITEM.lastIndex < text.length) {
    const start = LIST_ITEM.lastIndex;
    const match = LIST_ITEM.exec(text);
    if (!match || LIST_ITEM.lastIndex === start) break;
    const value = match[1] !== undefined ? match[1].replaceAll('""', '"') : match[2];
    if (value) values.push(value);
  }
  return values;
}

export function joinList(values) {
  const quoted = (v) => (/[,"]/.test(v) || v !== v.trim() ? `"${v.replaceAll('"', '""')}"` : v);
  return values.map(quoted).join(", ");
}

export function withValue(list, value) {
  return list.includes(value) ? list : [...list, value];
}
