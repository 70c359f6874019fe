// The start form: a served pipeline, its JSON input checked as typed; the service decides.

import { ApiError, request, requestJson, runUrl } from "./api.js";
import { $, el } from "./dom.js";
import { jsonType } from "./format.js";
import { list } from "./list.js";

export const start = {
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

$("#start-form").addEventListener("submit", (e) => start.submit(e));
$("#start-input").addEventListener("input", () => start.check());
$("#start-pipeline").addEventListener("change", () => start.check());
