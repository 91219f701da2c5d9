// The live tail: an EventSource on /api/tail. The browser reconnects by itself and sends
// Last-Event-ID, so the server goes on after the last row this page got; the RowTable
// drops any row it shows already.

export const BACKLOG = 100; // newest matching rows the stream starts with
const FLUSH_MS = 40; // rows that come this close together are drawn at once

export class LiveTail {
  constructor(params, { onRows, onState }) {
    this.onRows = onRows;
    this.onState = onState;
    this.queue = [];
    const query = new URLSearchParams(params);
    query.set("n", BACKLOG);
    this.source = new EventSource(`/api/tail?${query}`);
    this.source.onopen = () => this.onState("live");
    this.source.onmessage = (event) => this.take(event);
    this.source.onerror = () => this.failed();
  }

  take(event) {
    try {
      this.queue.push(JSON.parse(event.data));
    } catch {
      return;
    }
    if (this.queue.length === 1) setTimeout(() => this.flush(), FLUSH_MS);
  }

  flush() {
    const rows = this.queue;
    this.queue = [];
    if (rows.length) this.onRows(rows);
  }

  failed() {
    // CONNECTING: the browser retries on its own; CLOSED: the server refused the stream.
    this.onState(this.source.readyState === EventSource.CLOSED ? "refused" : "reconnecting");
  }

  stop() {
    this.source.close();
    this.queue = [];
  }
}
