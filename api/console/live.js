// Live events: GET /api/v1/events read with fetch (EventSource cannot send a bearer token), resumed with
// Last-Event-ID after a drop; `reset` tells the views to reload their lists.

import { token } from "./api.js";

export class Live {
  constructor() {
    this.listeners = new Set();
    this.lastId = null;
    this.stopped = false;
  }

  subscribe(listener) { this.listeners.add(listener); return () => this.listeners.delete(listener); }

  async start() {
    while (!this.stopped) {
      try {
        const response = await fetch("/api/v1/events", {
          headers: { Authorization: `Bearer ${token()}`, ...(this.lastId ? { "Last-Event-ID": this.lastId } : {}) },
        });
        if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
        await this.read(response.body.getReader());
      } catch { /* dropped: reconnect below */ }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  async read(reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      // The API (sse-starlette) ends lines with CRLF; the SSE spec allows CRLF, LF or CR.
      let blank;
      while ((blank = /\r\n\r\n|\n\n|\r\r/.exec(buffer))) {
        this.dispatch(buffer.slice(0, blank.index));
        buffer = buffer.slice(blank.index + blank[0].length);
      }
    }
  }

  dispatch(block) {
    const event = { type: "message", data: "", id: null };
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event.type = value;
      else if (field === "data") event.data += (event.data ? "\n" : "") + value;
      else if (field === "id") event.id = value;
    }
    if (event.id) this.lastId = event.id;
    let data = null;
    try { data = event.data ? JSON.parse(event.data) : null; } catch { data = event.data; }
    this.listeners.forEach((listener) => listener({ type: event.type, data }));
  }
}
