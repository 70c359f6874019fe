// Server-Sent Events over fetch, with reconnection on a backoff.

import { ApiError, problemDetail, request } from "./api.js";
import { setConn } from "./dom.js";

// fetch, not EventSource: it tells a 401 (logged out) from a network error, reads the
// ": synced" comment that ends the list's first batch, and reconnects on our backoff.
export class Stream {
  constructor(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.controller = null;
    this.failures = 0;
    this.timer = null;
    this.closed = false;
    this.connected = false;
  }

  open() {
    this.closed = false;
    this.connect();
    return this;
  }

  close() {
    this.closed = true;
    this.connected = false;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async connect() {
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();  // one connection at a time
    const controller = new AbortController();
    this.controller = controller;
    const superseded = () => this.closed || controller.signal.aborted
      || this.controller !== controller;
    let ended = false;
    try {
      const reply = await request(this.path, {
        headers: { Accept: "text/event-stream" }, signal: controller.signal,
        cache: "no-store" });
      if (reply.status === 401 || superseded()) return;  // 401: loggedOut() took over
      if (!reply.ok || !reply.body) {
        const detail = await problemDetail(reply);
        if (reply.status >= 400 && reply.status < 500) {
          this.handlers.fatal(detail);
          return;
        }
        throw new ApiError(reply.status, detail);
      }
      this.failures = 0;
      this.connected = true;
      this.handlers.open();
      ended = await this.read(reply.body.getReader());
    } catch (err) {
      if (superseded()) return;
    }
    this.connected = false;
    if (superseded() || ended) return;
    this.retry();
  }

  retry() {
    this.failures += 1;
    const delay = Math.min(30000, 500 * 2 ** Math.min(this.failures, 6))
      * (0.8 + Math.random() * 0.4);
    setConn(navigator.onLine === false || this.failures > 5 ? "offline" : "reconnecting");
    this.timer = setTimeout(() => { if (!this.closed) this.connect(); }, delay);
  }

  /** Read events until the stream ends; true when the server said "end". */
  async read(reader) {
    const decoder = new TextDecoder();
    let buffer = "", event = "message", data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split("\n");  // the service ends lines with \n alone
      buffer = lines.pop();
      for (let line of lines) {
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) {
            let parsed = null;
            try { parsed = JSON.parse(data.join("\n")); } catch (_) { parsed = null; }
            if (parsed !== null && this.handlers.event(event, parsed) === "end") {
              return true;
            }
          }
          event = "message";
          data = [];
        } else if (line.startsWith(":")) {
          if (line.slice(1).trim() === "synced" && this.handlers.synced) this.handlers.synced();
        } else {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
      }
    }
  }
}
