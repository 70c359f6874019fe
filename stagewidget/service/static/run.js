// A run's page: its stages, metrics chart, result, error and logs, live until it ends.

import { act, runUrl } from "./api.js";
import { $, drawChart, el, fillBar, setConn, setText, showPageProblem, updateActions
       } from "./dom.js";
import { ACTIVE, count, errorText, etaText, extent, latestMetrics, metricStage, metricText,
         newer, percent, seconds, seriesOf, shortText } from "./format.js";
import { Stream } from "./stream.js";

export const runPage = {
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
      const [lo, hi] = extent(values);
      legend.appendChild(el("li", `series-${i}`,
        `${shortText(name, 40)} (${metricText(lo)} \u2013 ${metricText(hi)})`));
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
      : "no log lines (a service shows them only when started with --expose-logs)");
  },

  facts(status) {
    const facts = $(".facts", this.node);
    const rows = [
      ["progress", `${Math.floor(percent(status.fraction) || 0)}%`],
      ["elapsed", seconds(status.elapsed_s)],
      ["ETA", ACTIVE.has(status.state) ? etaText(status.eta_s) || "unknown" : ""],
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
      setText(row.cells[6], stage.state === "running"
        ? etaText(stage.eta_s, stage.overdue) || "\u2026" : "");
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
