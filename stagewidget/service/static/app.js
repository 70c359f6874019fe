// stagewidget dashboard: the run list, a run's page, the start form and the login.
// Plain ES2020, no framework, no build. Everything a run carries is shown with
// textContent (runs carry any string a stage wrote); the DOM is updated at most once a
// frame, from the latest status of each run.
"use strict";

(() => {
  const BASE = document.querySelector('meta[name="stagewidget-base"]').content;
  const STATES = ["pending", "running", "succeeded", "failed", "cancelled", "lost"];
  const ACTIVE = new Set(["pending", "running"]);
  const RETRYABLE = new Set(["failed", "cancelled"]);
  const MAX_SERIES = 4;
  const $ = (selector, root = document) => root.querySelector(selector);

  // -- session and requests ----------------------------------------------------------
  // login: whether the back end has a token login (the Jupyter extension has none:
  // Jupyter authenticated the user before the page loaded)
  const session = { csrfToken: null, csrfHeader: "X-CSRF-Token", login: true };

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function problemDetail(reply) {
    try {
      const body = await reply.json();
      if (body && typeof body.detail === "string") return body.detail;
    } catch (_) { /* not JSON */ }
    return `the service answered ${reply.status} ${reply.statusText}`.trim();
  }

  /** fetch(BASE + path) with the session cookie and, for changes, the CSRF token. */
  async function request(path, options = {}) {
    const headers = new Headers(options.headers || {});
    const method = (options.method || "GET").toUpperCase();
    if (!["GET", "HEAD"].includes(method) && session.csrfToken) {
      headers.set(session.csrfHeader, session.csrfToken);
    }
    headers.set("Accept", "application/json");
    const reply = await fetch(BASE + path, { ...options, method, headers,
                                             credentials: "same-origin" });
    if (reply.status === 401 && path !== "api/login") {
      loggedOut();
    }
    return reply;
  }

  async function requestJson(path, options) {
    const reply = await request(path, options);
    if (!reply.ok) throw new ApiError(reply.status, await problemDetail(reply));
    return reply.status === 204 ? null : reply.json();
  }

  // -- formatting (textContent only) -------------------------------------------------
  function seconds(value) {
    if (value === null || value === undefined || !Number.isFinite(value)) return "";
    if (value < 10) return `${value.toFixed(1)} s`;
    if (value < 60) return `${Math.round(value)} s`;
    const m = Math.floor(value / 60), s = Math.round(value % 60);
    if (m < 60) return `${m} min ${String(s).padStart(2, "0")} s`;
    const h = Math.floor(m / 60);
    return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  }

  function percent(fraction) {
    if (typeof fraction !== "number" || !Number.isFinite(fraction)) return null;
    return Math.max(0, Math.min(100, fraction * 100));
  }

  function metricText(value) {
    if (typeof value === "number") {
      if (Number.isInteger(value)) return String(value);
      const abs = Math.abs(value);
      return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? value.toExponential(3)
        : String(Number(value.toPrecision(4)));
    }
    return String(value);
  }

  function shortText(value, limit = 200) {
    const text = String(value === null || value === undefined ? "" : value);
    return text.length > limit ? text.slice(0, limit) + "\u2026" : text;
  }

  function count(value) {
    return typeof value === "number" ? value.toLocaleString() : String(value);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  /** The stage whose metrics a run shows: the current one, else the last with any. */
  function metricStage(status) {
    const stages = Array.isArray(status.stages) ? status.stages : [];
    const current = Number.isInteger(status.current) ? stages[status.current] : null;
    const has = (s) => s && ((s.metrics && Object.keys(s.metrics).length)
                             || (s.history && Object.keys(s.history).length));
    if (has(current)) return current;
    for (let i = stages.length - 1; i >= 0; i--) if (has(stages[i])) return stages[i];
    return null;
  }

  /** Up to MAX_SERIES numeric series of a stage's metric history: [[name, values]]. */
  function seriesOf(stage) {
    if (!stage || !stage.history) return [];
    return Object.entries(stage.history)
      .map(([name, values]) => [name, (Array.isArray(values) ? values : [])
        .filter((v) => typeof v === "number" && Number.isFinite(v))])
      .filter(([, values]) => values.length > 0)
      .slice(0, MAX_SERIES);
  }

  /** polyline points of ``values`` scaled into width x height (own min/max). */
  function points(values, width, height, pad) {
    const lo = Math.min(...values), hi = Math.max(...values);
    const span = hi - lo || 1;
    const step = values.length > 1 ? (width - 2 * pad) / (values.length - 1) : 0;
    return values.map((v, i) => {
      const x = pad + i * step;
      const y = hi === lo ? height / 2 : pad + (height - 2 * pad) * (1 - (v - lo) / span);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    }).join(" ");
  }

  function drawChart(svg, series, width, height) {
    const lines = svg.querySelectorAll("polyline");
    series.forEach(([, values], i) => {
      let line = lines[i];
      if (!line) {
        line = svgEl("polyline", { class: `series-${i}` });
        svg.appendChild(line);
      }
      line.setAttribute("points", points(values.length > 1 ? values : [values[0], values[0]],
                                         width, height, 4));
    });
    for (let i = series.length; i < lines.length; i++) lines[i].remove();
  }

  function latestMetrics(stage) {
    if (!stage || !stage.metrics) return "";
    return Object.entries(stage.metrics).slice(0, 6)
      .map(([k, v]) => `${shortText(k, 40)} ${shortText(metricText(v), 40)}`).join(" \u00b7 ");
  }

  function errorText(error) {
    if (!error) return "";
    const where = error.stage ? ` (stage ${error.stage})` : "";
    return `${error.type || "Error"}: ${error.message || ""}${where}`;
  }

  // -- the connection indicator --------------------------------------------------------
  const conn = $("#conn");
  function setConn(state) {
    if (conn.dataset.state !== state) {
      conn.dataset.state = state;
      conn.textContent = state;
    }
  }

  // -- Server-Sent Events over fetch -----------------------------------------------------
  // fetch, not EventSource: it tells a 401 (logged out) from a network error, reads the
  // ": synced" comment that ends the list's first batch, and reconnects on our backoff.
  class Stream {
    constructor(path, handlers) {
      this.path = path;
      this.handlers = handlers;
      this.controller = null;
      this.failures = 0;
      this.timer = null;
      this.closed = false;
    }

    open() {
      this.closed = false;
      this.connect();
      return this;
    }

    close() {
      this.closed = true;
      clearTimeout(this.timer);
      if (this.controller) this.controller.abort();
      this.controller = null;
    }

    async connect() {
      clearTimeout(this.timer);
      const controller = new AbortController();
      this.controller = controller;
      let ended = false;
      try {
        const reply = await request(this.path, {
          headers: { Accept: "text/event-stream" }, signal: controller.signal,
          cache: "no-store" });
        if (reply.status === 401) return;  // loggedOut() took over
        if (!reply.ok || !reply.body) {
          const detail = await problemDetail(reply);
          if (reply.status >= 400 && reply.status < 500) {
            this.handlers.fatal(detail);
            return;
          }
          throw new ApiError(reply.status, detail);
        }
        this.failures = 0;
        this.handlers.open();
        ended = await this.read(reply.body.getReader());
      } catch (err) {
        if (controller.signal.aborted || this.closed) return;
      }
      if (this.closed || controller.signal.aborted) return;
      if (ended) return;
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
        let cut;
        while ((cut = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, cut);
          buffer = buffer.slice(cut + (buffer.startsWith("\r\n", cut) ? 2 : 1));
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

  // -- actions (Cancel, Retry) ---------------------------------------------------------
  async function act(action, runId, button, problemNode) {
    button.disabled = true;
    problemNode.hidden = true;
    try {
      const path = action === "cancel" ? `api/runs/${encodeURIComponent(runId)}`
        : `api/runs/${encodeURIComponent(runId)}/retry`;
      const status = await requestJson(path, { method: action === "cancel" ? "DELETE" : "POST" });
      return status;
    } catch (err) {
      problemNode.textContent = err instanceof ApiError ? err.message
        : `the request failed: ${err.message}`;
      problemNode.hidden = false;
      return null;
    } finally {
      button.disabled = false;
    }
  }

  function updateActions(root, state) {
    $('button[data-action="cancel"]', root).hidden = !ACTIVE.has(state);
    $('button[data-action="retry"]', root).hidden = !RETRYABLE.has(state);
  }

  function runUrl(runId) {
    return `${BASE}runs/${encodeURIComponent(runId)}`;
  }

  // -- the run list ----------------------------------------------------------------------
  const list = {
    view: $("#list-view"),
    runsNode: $("#runs"),
    rows: new Map(),      // run id -> row element
    latest: new Map(),    // run id -> latest status
    dirty: new Set(),
    seenSinceOpen: null,  // ids sent in this connection's first batch
    frame: 0,
    stream: null,
    pipelines: new Set(),

    filters() {
      const query = new URLSearchParams(location.search);
      const state = query.get("state") || "";
      return { state: STATES.includes(state) ? state : "", pipeline: query.get("pipeline") || "" };
    },

    matches(status) {
      const { state, pipeline } = this.filters();
      return (!state || status.state === state) && (!pipeline || status.pipeline === pipeline);
    },

    start() {
      this.view.hidden = false;
      const { state, pipeline } = this.filters();
      $("#filter-state").value = state;
      this.addPipelineOption(pipeline);
      $("#filter-pipeline").value = pipeline;
      this.connect();
    },

    connect() {
      if (this.stream) this.stream.close();
      const { state, pipeline } = this.filters();
      const query = new URLSearchParams();
      if (state) query.set("state", state);
      if (pipeline) query.set("pipeline", pipeline);
      const qs = query.toString();
      this.stream = new Stream(`api/events${qs ? "?" + qs : ""}`, {
        open: () => { this.seenSinceOpen = new Set(); setConn("live"); },
        event: (name, status) => {
          if (name === "status" && status && typeof status.run_id === "string") {
            if (this.seenSinceOpen) this.seenSinceOpen.add(status.run_id);
            this.latest.set(status.run_id, status);
            this.dirty.add(status.run_id);
            this.schedule();
          }
        },
        synced: () => {
          // runs gone while we were away (expired, or no longer matching) leave the list
          const seen = this.seenSinceOpen;
          this.seenSinceOpen = null;
          if (!seen) return;
          for (const id of this.latest.keys()) {
            if (!seen.has(id)) { this.latest.delete(id); this.dirty.add(id); }
          }
          this.schedule();
        },
        fatal: (detail) => { showPageProblem(detail); setConn("offline"); },
      }).open();
    },

    stop() {
      if (this.stream) this.stream.close();
      this.stream = null;
      cancelAnimationFrame(this.frame);
      this.frame = 0;
      this.latest.clear();
      this.dirty.clear();
      for (const row of this.rows.values()) row.remove();
      this.rows.clear();
      this.view.hidden = true;
    },

    setFilter(name, value) {
      const query = new URLSearchParams(location.search);
      if (value) query.set(name, value); else query.delete(name);
      const qs = query.toString();
      history.replaceState(null, "", location.pathname + (qs ? "?" + qs : ""));
      // rows that do not match go now; the service sends the matching runs again
      for (const id of this.latest.keys()) this.dirty.add(id);
      this.schedule();
      this.connect();
    },

    addPipelineOption(name) {
      if (!name || this.pipelines.has(name)) return;
      this.pipelines.add(name);
      const select = $("#filter-pipeline");
      const option = el("option", "", name);
      option.value = name;
      const after = Array.from(select.options).slice(1).find((o) => o.value > name);
      select.insertBefore(option, after || null);
    },

    schedule() {
      if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
    },

    flush() {
      this.frame = 0;
      for (const id of this.dirty) {
        const status = this.latest.get(id);
        let row = this.rows.get(id);
        if (!status || !this.matches(status)) {
          if (row) { row.remove(); this.rows.delete(id); }
          if (status) this.latest.delete(id);
          continue;
        }
        this.addPipelineOption(status.pipeline);
        if (!row) {
          row = this.newRow(id);
          this.rows.set(id, row);
          this.place(row, status);
        }
        this.fill(row, status);
      }
      this.dirty.clear();
      const n = this.rows.size;
      $("#run-count").textContent = n === 1 ? "1 run" : `${n} runs`;
      $("#no-runs").hidden = n > 0;
    },

    /** Insert ``row`` so the list stays newest first. */
    place(row, status) {
      const created = Number(status.created_at) || 0;
      row.dataset.created = String(created);
      const next = Array.from(this.runsNode.children).find(
        (other) => Number(other.dataset.created) < created);
      this.runsNode.insertBefore(row, next || null);
    },

    newRow(id) {
      const row = el("li", "run");
      row.dataset.runId = id;
      const head = el("div", "run-head");
      const link = el("a", "run-link");
      link.href = runUrl(id);
      const badge = el("span", "badge");
      const shortId = el("code", "run-id", id.slice(0, 8));
      const eta = el("span", "eta");
      const actions = el("span", "actions");
      for (const [action, label] of [["cancel", "Cancel"], ["retry", "Retry"]]) {
        const button = el("button", "", label);
        button.type = "button";
        button.dataset.action = action;
        button.hidden = true;
        actions.appendChild(button);
      }
      head.append(link, badge, shortId, eta, actions);
      const stages = el("div", "stages");
      const metrics = el("div", "metrics");
      const error = el("p", "run-error");
      error.hidden = true;
      const problem = el("p", "problem");
      problem.hidden = true;
      problem.setAttribute("role", "alert");
      row.append(head, stages, metrics, error, problem);
      return row;
    },

    fill(row, status) {
      const state = String(status.state);
      if (row.dataset.state !== state) row.dataset.state = state;
      row.dataset.pipeline = String(status.pipeline);
      const link = $(".run-link", row);
      setText(link, shortText(status.pipeline, 120));
      link.setAttribute("aria-label", `run ${row.dataset.runId.slice(0, 8)} of ${shortText(status.pipeline, 120)}`);
      setText($(".badge", row), state);
      let eta;
      const stages = Array.isArray(status.stages) ? status.stages : [];
      const current = Number.isInteger(status.current) ? stages[status.current] : null;
      if (current && current.overdue) eta = "overdue";
      else if (ACTIVE.has(state)) eta = `ETA ${status.eta_s === 0 ? "soon" : seconds(status.eta_s) || "\u2026"}`;
      else eta = status.elapsed_s ? `took ${seconds(status.elapsed_s)}` : "";
      setText($(".eta", row), eta);
      updateActions(row, state);
      fillBars($(".stages", row), status.stages, true);
      const stage = metricStage(status);
      const metrics = $(".metrics", row);
      const text = latestMetrics(stage);
      const series = seriesOf(stage).slice(0, 1);
      if (!text && !series.length) {
        if (metrics.firstChild) metrics.textContent = "";
      } else {
        let label = $(".metrics-text", metrics), spark = $(".spark", metrics);
        if (!label) {
          label = el("span", "metrics-text");
          spark = svgEl("svg", { class: "spark", viewBox: "0 0 120 28",
                                 preserveAspectRatio: "none", "aria-hidden": "true" });
          metrics.append(spark, label);
        }
        setText(label, text);
        spark.hidden = !series.length;
        if (series.length) drawChart(spark, series, 120, 28);
      }
      const error = $(".run-error", row);
      error.hidden = !status.error;
      setText(error, shortText(errorText(status.error), 500));
    },
  };

  /** Whether ``status`` is no older than ``known`` (an action's reply can arrive after
   * the stream's next event). */
  function newer(status, known) {
    return !known || !(Number(known.updated_at) > Number(status.updated_at));
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  /** Stage bars into ``container``: name, a bar per stage (``.bar[data-stage]``), percent. */
  function fillBars(container, stages, withNames) {
    stages = Array.isArray(stages) ? stages : [];
    const per = withNames ? 3 : 1;
    while (container.children.length > stages.length * per) container.lastChild.remove();
    stages.forEach((stage, i) => {
      let bar = container.children[i * per + (withNames ? 1 : 0)];
      if (!bar) {
        const name = el("span", "stage-name");
        bar = el("div", "bar");
        bar.dataset.stage = String(i);
        bar.setAttribute("role", "progressbar");
        bar.setAttribute("aria-valuemin", "0");
        bar.setAttribute("aria-valuemax", "100");
        bar.appendChild(el("div", "bar-fill"));
        const pct = el("span", "pct");
        if (withNames) container.append(name, bar, pct); else container.append(bar);
      }
      fillBar(bar, stage);
      if (withNames) {
        setText(container.children[i * per], shortText(stage.name, 80));
        container.children[i * per].title = String(stage.name);
        const p = percent(stage.fraction);
        setText(container.children[i * per + 2], p === null ? (stage.state === "running" ? count(stage.done) : "") : `${Math.floor(p)}%`);
      }
    });
  }

  function fillBar(bar, stage) {
    const p = percent(stage.fraction);
    const width = `${p === null ? 0 : p.toFixed(1)}%`;
    const fill = bar.firstChild;
    if (fill.style.width !== width) fill.style.width = width;
    if (bar.dataset.state !== stage.state) bar.dataset.state = String(stage.state);
    bar.setAttribute("aria-valuenow", p === null ? "0" : String(Math.floor(p)));
    bar.setAttribute("aria-label", `${shortText(stage.name, 80)}: ${stage.state}`);
  }

  // list clicks: one listener for every row's buttons
  list.runsNode.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("[data-run-id]");
    const status = await act(button.dataset.action, row.dataset.runId, button, $(".problem", row));
    if (status && typeof status.run_id === "string"
        && newer(status, list.latest.get(status.run_id))) {
      list.latest.set(status.run_id, status);
      list.dirty.add(status.run_id);
      list.schedule();
    }
  });
  $("#filter-state").addEventListener("change", (e) => list.setFilter("state", e.target.value));
  $("#filter-pipeline").addEventListener("change", (e) => list.setFilter("pipeline", e.target.value));
  $("#filters").addEventListener("submit", (e) => e.preventDefault());

  // -- the start form ------------------------------------------------------------------
  const start = {
    pipelines: new Map(),  // name -> input schema (null: takes no input)

    async load() {
      let served = [];
      try {
        const reply = await request("api/pipelines");
        if (reply.status === 404 || !reply.ok) return;
        const body = await reply.json();
        served = Array.isArray(body) ? body : Array.isArray(body.pipelines) ? body.pipelines : [];
      } catch (_) {
        return;
      }
      const select = $("#start-pipeline");
      select.textContent = "";
      for (const item of served) {
        if (!item || typeof item.name !== "string") continue;
        this.pipelines.set(item.name, item.input_schema === undefined ? {} : item.input_schema);
        const option = el("option", "", item.name);
        option.value = item.name;
        select.appendChild(option);
        list.addPipelineOption(item.name);
      }
      $("#start").hidden = this.pipelines.size === 0;
      this.check();
    },

    /** Check the input client-side (JSON, the schema's top-level type); return a note. */
    check() {
      const name = $("#start-pipeline").value;
      const input = $("#start-input");
      const schema = this.pipelines.get(name);
      const text = input.value.trim();
      let note = "", bad = false;
      if (schema === null) {
        note = "this pipeline takes no input: leave the box empty";
        bad = text !== "";
      } else if (text === "") {
        note = schema && schema.type ? `input: a JSON ${schema.type}` : "input: any JSON value";
      } else {
        let value;
        try {
          value = JSON.parse(text);
          const kind = jsonType(value);
          const wanted = schema && schema.type;
          const allowed = Array.isArray(wanted) ? wanted : wanted ? [wanted] : null;
          if (allowed && !allowed.some((t) => t === kind || (t === "number" && kind === "integer"))) {
            note = `this pipeline takes a JSON ${allowed.join(" or ")} (this is a JSON ${kind})`;
            bad = true;
          } else {
            note = "valid JSON";
          }
        } catch (err) {
          note = `not valid JSON: ${err.message}`;
          bad = true;
        }
      }
      $("#start-check").textContent = note;
      input.setAttribute("aria-invalid", bad ? "true" : "false");
      return bad;
    },

    async submit(event) {
      event.preventDefault();
      const problem = $("#start-problem");
      problem.hidden = true;
      this.check();  // advisory: the service has the last word, and says why it refuses
      const name = $("#start-pipeline").value;
      if (!name) return;
      const text = $("#start-input").value;
      const button = $('#start-form button[type="submit"]');
      button.disabled = true;
      try {
        const options = { method: "POST" };
        if (text.trim() !== "") {
          options.body = text;
          options.headers = { "Content-Type": "application/json" };
        }
        const status = await requestJson(`api/pipelines/${encodeURIComponent(name)}/runs`, options);
        location.assign(runUrl(status.run_id));
      } catch (err) {
        problem.textContent = err instanceof ApiError ? err.message : `the request failed: ${err.message}`;
        problem.hidden = false;
      } finally {
        button.disabled = false;
      }
    },
  };

  function jsonType(value) {
    if (value === null) return "null";
    if (Array.isArray(value)) return "array";
    if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
    return typeof value;  // string, boolean, object
  }

  $("#start-form").addEventListener("submit", (e) => start.submit(e));
  $("#start-input").addEventListener("input", () => start.check());
  $("#start-pipeline").addEventListener("change", () => start.check());

  // -- the run page --------------------------------------------------------------------
  const runPage = {
    view: $("#run-view"),
    node: $("#run"),
    stream: null,
    latest: null,
    frame: 0,

    start(runId) {
      this.view.hidden = false;
      this.node.dataset.runId = runId;
      setText($(".run-id", this.node), runId);
      document.title = `run ${runId.slice(0, 8)} \u2013 stagewidget`;
      this.stream = new Stream(`api/runs/${encodeURIComponent(runId)}/events`, {
        open: () => setConn("live"),
        event: (name, data) => {
          if (name === "status") {
            this.latest = data;
            this.schedule();
          } else if (name === "end") {
            setConn("live");
            return "end";
          }
          return undefined;
        },
        fatal: (detail) => { showPageProblem(detail); setConn("offline"); },
      }).open();
    },

    stop() {
      if (this.stream) this.stream.close();
      this.stream = null;
      this.latest = null;
      this.view.hidden = true;
      cancelAnimationFrame(this.frame);
      this.frame = 0;
      const node = this.node;
      for (const key of ["runId", "state", "pipeline"]) delete node.dataset[key];
      $("#stages tbody", node).textContent = "";
      for (const sel of [".facts", ".metrics-latest", ".legend", ".result", "#logs",
                         ".run-error", ".pipeline", ".badge", ".run-id"]) {
        $(sel, node).textContent = "";
      }
      delete $(".run-error", node).dataset.text;
      $(".action-problem", node).hidden = true;
      $("#metrics-chart", node).textContent = "";
    },

    schedule() {
      if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.fill(this.latest); });
    },

    fill(status) {
      if (!status) return;
      const node = this.node, state = String(status.state);
      node.dataset.state = state;
      node.dataset.pipeline = String(status.pipeline);
      setText($(".pipeline", node), shortText(status.pipeline, 200));
      setText($(".badge", node), state);
      updateActions(node, state);
      this.facts(status);
      this.error(status.error);
      this.stages(Array.isArray(status.stages) ? status.stages : []);
      const stage = metricStage(status);
      setText($(".metrics-latest", node), latestMetrics(stage) || "no metrics reported");
      const series = seriesOf(stage);
      drawChart($("#metrics-chart", node), series, 600, 160);
      const legend = $(".legend", node);
      legend.textContent = "";
      series.forEach(([name, values], i) => {
        legend.appendChild(el("li", `series-${i}`,
          `${shortText(name, 40)} (${metricText(Math.min(...values))} \u2013 ${metricText(Math.max(...values))})`));
      });
      const result = $(".result", node);
      if (state === "succeeded") {
        let text;
        if (status.result_unavailable) text = String(status.result_unavailable);
        else if (status.result_is_repr) text = String(status.result);
        else {
          try { text = JSON.stringify(status.result, null, 2); } catch (_) { text = String(status.result); }
        }
        setText(result, shortText(text, 20000));
      } else {
        setText(result, state === "failed" || state === "cancelled" || state === "lost"
          ? "no result" : "not finished yet");
      }
      const logs = Array.isArray(status.logs) ? status.logs : [];
      setText($("#logs", node), logs.length ? logs.map((l) => String(l)).join("\n")
        : "no log lines (the service shows runs' logs only when started with --expose-logs)");
    },

    facts(status) {
      const facts = $(".facts", this.node);
      const rows = [
        ["progress", `${Math.floor(percent(status.fraction) || 0)}%`],
        ["elapsed", seconds(status.elapsed_s)],
        ["ETA", ACTIVE.has(status.state) ? seconds(status.eta_s) || "unknown" : ""],
        ["created", status.created_at ? new Date(status.created_at * 1000).toLocaleString() : ""],
        ["retry of", status.retry_of ? String(status.retry_of).slice(0, 8) : ""],
      ].filter(([, v]) => v);
      facts.textContent = "";
      for (const [k, v] of rows) {
        const div = el("div");
        div.append(el("dt", "", k), el("dd", "", v));
        facts.appendChild(div);
      }
      if (status.retry_of) {
        const link = el("a", "", "");
        link.href = runUrl(String(status.retry_of));
        link.textContent = String(status.retry_of).slice(0, 8);
        const dd = facts.lastChild.lastChild;
        dd.textContent = "";
        dd.appendChild(link);
      }
    },

    error(error) {
      const box = $(".run-error", this.node);
      box.hidden = !error;
      if (!error) { box.textContent = ""; return; }
      const text = shortText(errorText(error), 4000);
      if (box.dataset.text === text + (error.traceback || "")) return;
      box.dataset.text = text + (error.traceback || "");
      box.textContent = "";
      box.appendChild(el("strong", "", text));
      if (error.traceback) box.appendChild(el("pre", "", String(error.traceback)));
    },

    stages(stages) {
      const body = $("#stages tbody", this.node);
      while (body.rows.length > stages.length) body.lastChild.remove();
      stages.forEach((stage, i) => {
        let row = body.rows[i];
        if (!row) {
          row = body.insertRow();
          for (let c = 0; c < 7; c++) row.insertCell();
          const bar = el("div", "bar");
          bar.dataset.stage = String(i);
          bar.setAttribute("role", "progressbar");
          bar.setAttribute("aria-valuemin", "0");
          bar.setAttribute("aria-valuemax", "100");
          bar.appendChild(el("div", "bar-fill"));
          row.cells[2].appendChild(bar);
        }
        row.dataset.state = String(stage.state);
        setText(row.cells[0], shortText(stage.name, 200));
        setText(row.cells[1], String(stage.state) + (stage.overdue ? " (overdue)" : ""));
        fillBar(row.cells[2].firstChild, stage);
        const total = stage.total === null || stage.total === undefined ? "" : ` / ${count(stage.total)}`;
        const unit = stage.unit ? ` ${shortText(stage.unit, 20)}` : "";
        setText(row.cells[3], `${count(stage.done)}${total}${unit}`);
        setText(row.cells[4], seconds(stage.elapsed_s));
        setText(row.cells[5], seconds(stage.expected_s) || "\u2013");
        setText(row.cells[6], stage.state === "running" ? seconds(stage.eta_s) || "\u2026" : "");
      });
    },
  };

  runPage.node.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const runId = runPage.node.dataset.runId;
    const status = await act(button.dataset.action, runId, button, $(".action-problem", runPage.node));
    if (status && button.dataset.action === "retry" && status.run_id !== runId) {
      location.assign(runUrl(status.run_id));
    } else if (status && newer(status, runPage.latest)) {
      runPage.latest = status;
      runPage.schedule();
    }
  });

  // -- login, logout, routing ------------------------------------------------------------
  function showPageProblem(detail) {
    const node = $("#page-problem");
    node.textContent = detail;
    node.hidden = !detail;
  }

  function route() {
    const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "";
    const match = /^runs\/([^/]+)$/.exec(path);
    if (match) return { page: "run", runId: decodeURIComponent(match[1]) };
    return { page: "list" };
  }

  function showApp() {
    $("#login-view").hidden = true;
    const where = route();
    if (where.page === "run") runPage.start(where.runId);
    else {
      list.start();
      start.load();
    }
  }

  let loggedIn = false;
  function loggedOut() {
    if (!loggedIn && !$("#login-view").hidden) return;
    loggedIn = false;
    session.csrfToken = null;
    list.stop();
    runPage.stop();
    start.pipelines.clear();
    $("#start").hidden = true;
    $("#logout").hidden = true;
    showPageProblem("");
    setConn("offline");
    if (!session.login) {  // nothing to log in to here: the host's own login it is
      showPageProblem("the server no longer accepts this page's session: reload the page "
                      + "(and log in again if asked)");
      return;
    }
    $("#login-view").hidden = false;
    $("#token").focus();
  }

  function loggedInWith(body) {
    loggedIn = true;
    session.csrfToken = body.csrf_token || null;
    if (typeof body.csrf_header === "string" && body.csrf_header) session.csrfHeader = body.csrf_header;
    session.login = body.login !== false;
    $("#logout").hidden = !session.csrfToken || !session.login;
    showApp();
  }

  $("#login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#token"), problem = $("#login-problem");
    const button = $('#login button[type="submit"]');
    problem.hidden = true;
    button.disabled = true;
    try {
      const reply = await request("api/login", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token: input.value }) });
      if (!reply.ok) {
        problem.textContent = await problemDetail(reply);
        problem.hidden = false;
        input.select();
        return;
      }
      const body = await reply.json();
      input.value = "";
      loggedInWith({ ...body, csrf_header: session.csrfHeader, login: true });
    } catch (err) {
      problem.textContent = `the login failed: ${err.message}`;
      problem.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  $("#logout").addEventListener("click", async () => {
    try {
      await request("api/logout", { method: "POST" });
    } finally {
      loggedOut();
    }
  });

  window.addEventListener("online", () => {
    for (const stream of [list.stream, runPage.stream]) {
      if (stream && !stream.closed && stream.failures) stream.connect();
    }
  });
  window.addEventListener("offline", () => setConn("offline"));

  async function boot() {
    let body;
    try {
      const reply = await fetch(`${BASE}api/session`, { credentials: "same-origin",
                                                        headers: { Accept: "application/json" } });
      if (!reply.ok) throw new ApiError(reply.status, await problemDetail(reply));
      body = await reply.json();
    } catch (err) {
      showPageProblem(`cannot reach the service: ${err.message}`);
      setConn("offline");
      return;
    }
    if (typeof body.csrf_header === "string" && body.csrf_header) session.csrfHeader = body.csrf_header;
    session.login = body.login !== false;
    if (body.token_required && !body.session && session.login) {
      loggedIn = true;  // so loggedOut() runs its reset
      loggedOut();
      return;
    }
    loggedInWith(body);
  }

  boot();
})();
