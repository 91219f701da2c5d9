// The live tail: Server-Sent Events from /api/tail, read with fetch rather than EventSource.
// EventSource gives up for good on any answer but 200 (a restarting serve answers 503
// until its database is ready), and a new EventSource cannot send Last-Event-ID. Here
// every reconnect sends the last event id received: a row's, or the stream's position,
// which the server sends as an id without data from its first write on (after the first
// rows, and when rows left out by the filters moved it). So the server goes on right
// where the stream was, even when it was cut before any row came: no row twice, none
// missed (tests/test_console_browser.py::
// test_live_mode_shows_new_rows_pauses_and_resumes_once_each,
// test_live_mode_cut_before_any_row_misses_none). The stream counts as live once it has
// sent its position. The RowTable drops any row it shows already.

import { loginUrl } from "./api.js";

export const BACKLOG = 100; // newest matching rows the first connection starts with
const FLUSH_MS = 40; // rows that come this close together are drawn at once
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// The event stream format (WHATWG HTML, "server-sent events"): fields until a blank line.
export class EventParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.data = [];
    this.id = null;
  }

  feed(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  // A blank line dispatches: the id holds from then on, with data or without (data null).
  line(line) {
    if (line === "") {
      this.onEvent(this.id, this.data.length ? this.data.join("\n") : null);
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
  }
}

async function errorText(response) {
  try {
    return (await response.json()).error;
  } catch {
    return `HTTP ${response.status}`;
  }
}

export class LiveTail {
  constructor(params, { onRows, onState }) {
    this.params = new URLSearchParams(params);
    this.onRows = onRows;
    this.onState = onState;
    this.queue = [];
    this.lastId = null;
    this.positioned = false; // this connection has sent an id
    this.stopped = false;
    this.controller = null;
    this.run();
  }

  async run() {
    let delay = RETRY_MIN_MS;
    while (!this.stopped) {
      const outcome = await this.connect();
      if (this.stopped || outcome === "fatal") return;
      if (outcome === "ended") delay = RETRY_MIN_MS;
      this.onState("reconnecting");
      await sleep(delay);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  url() {
    const query = new URLSearchParams(this.params);
    if (this.lastId === null) query.set("n", BACKLOG);
    return `/api/tail?${query}`;
  }

  async connect() {
    this.controller = new AbortController();
    const headers = { Accept: "text/event-stream" };
    if (this.lastId !== null) headers["Last-Event-ID"] = this.lastId;
    let response;
    try {
      response = await fetch(this.url(), { headers, signal: this.controller.signal,
        credentials: "same-origin", cache: "no-store" });
    } catch {
      return "failed";
    }
    if (response.status === 401) {
      location.assign(loginUrl());
      return "fatal";
    }
    if (response.status >= 400 && response.status < 500) {
      this.onState("refused", await errorText(response));
      return "fatal";
    }
    if (!response.ok || !response.body) return "failed";
    this.positioned = false;
    try {
      await this.read(response.body);
    } catch {
      // cut off: the server stopped, the network went, or stop() aborted it
    }
    return "ended";
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new EventParser((id, data) => this.take(id, data));
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.feed(value);
    }
  }

  take(id, data) {
    if (id !== null) this.lastId = id;
    if (id !== null && !this.positioned) {
      this.positioned = true;
      this.onState("live");
    }
    if (data === null) return;
    try {
      this.queue.push(JSON.parse(data));
    } catch {
      return;
    }
    if (this.queue.length === 1) setTimeout(() => this.flush(), FLUSH_MS);
  }

  flush() {
    const rows = this.queue;
    this.queue = [];
    if (rows.length && !this.stopped) this.onRows(rows);
  }

  stop() {
    this.stopped = true;
    this.queue = [];
    if (this.controller) this.controller.abort();
  }
}
