// The run list: one api/events stream, rows updated at most once a frame.

import { act, runUrl } from "./api.js";
import { $, el, fillBars, drawChart, setConn, setText, showPageProblem, svgEl, updateActions
       } from "./dom.js";
import { ACTIVE, STATES, etaText, latestMetrics, metricStage, newer, seconds, seriesOf,
         shortText, errorText } from "./format.js";
import { Stream } from "./stream.js";

export const list = {
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

  matches(status, { state, pipeline }) {
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
    const filters = this.filters();
    for (const id of this.dirty) {
      const status = this.latest.get(id);
      let row = this.rows.get(id);
      if (!status || !this.matches(status, filters)) {
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
    const last = this.runsNode.lastElementChild;
    if (!last || Number(last.dataset.created) >= created) {  // the first batch's order
      this.runsNode.appendChild(row);
      return;
    }
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
    let eta = status.elapsed_s ? `took ${seconds(status.elapsed_s)}` : "";
    const stages = Array.isArray(status.stages) ? status.stages : [];
    const current = Number.isInteger(status.current) ? stages[status.current] : null;
    if (state === "pending" && Number.isInteger(status.queue_position)) {
      eta = `queued #${status.queue_position}`;
    } else if (ACTIVE.has(state)) {
      eta = `ETA ${etaText(status.eta_s, current && current.overdue) || "\u2026"}`;
    }
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
