// Pure formatting of a run's status JSON for the page (no DOM).

export const STATES = ["pending", "running", "succeeded", "failed", "cancelled", "lost"];
export const ACTIVE = new Set(["pending", "running"]);
export const RETRYABLE = new Set(["failed", "cancelled"]);
const MAX_SERIES = 4;

export function seconds(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "";
  if (value < 10) return `${value.toFixed(1)} s`;
  const whole = Math.round(value);
  if (whole < 60) return `${whole} s`;
  const m = Math.floor(whole / 60), s = whole % 60;
  if (m < 60) return `${m} min ${String(s).padStart(2, "0")} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${String(m % 60).padStart(2, "0")} min`;
}

/** The ETA of something still going: "overdue" past twice its usual time, "soon"
 * past its usual time (an expected duration from history gives 0), else seconds. */
export function etaText(etaS, overdue) {
  if (overdue) return "overdue";
  if (etaS === 0) return "soon";
  return seconds(etaS);
}

export function percent(fraction) {
  if (typeof fraction !== "number" || !Number.isFinite(fraction)) return null;
  return Math.max(0, Math.min(100, fraction * 100));
}

export function metricText(value) {
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? value.toExponential(3)
      : String(Number(value.toPrecision(4)));
  }
  return String(value);
}

export function shortText(value, limit = 200) {
  const text = String(value === null || value === undefined ? "" : value);
  return text.length > limit ? text.slice(0, limit) + "\u2026" : text;
}

export function count(value) {
  return typeof value === "number" ? value.toLocaleString() : String(value);
}

/** The stage whose metrics a run shows: the current one, else the last with any. */
export function metricStage(status) {
  const stages = Array.isArray(status.stages) ? status.stages : [];
  const current = Number.isInteger(status.current) ? stages[status.current] : null;
  const has = (s) => s && ((s.metrics && Object.keys(s.metrics).length)
                           || (s.history && Object.keys(s.history).length));
  if (has(current)) return current;
  for (let i = stages.length - 1; i >= 0; i--) if (has(stages[i])) return stages[i];
  return null;
}

/** Up to MAX_SERIES numeric series of a stage's metric history: [[name, values]]. */
export function seriesOf(stage) {
  if (!stage || !stage.history) return [];
  return Object.entries(stage.history)
    .map(([name, values]) => [name, (Array.isArray(values) ? values : [])
      .filter((v) => typeof v === "number" && Number.isFinite(v))])
    .filter(([, values]) => values.length > 0)
    .slice(0, MAX_SERIES);
}

/** [min, max] of ``values`` (a loop: spreading a long series would hit the stack). */
export function extent(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

/** polyline points of ``values`` scaled into width x height (own min/max). */
export function points(values, width, height, pad) {
  const [lo, hi] = extent(values);
  const span = hi - lo || 1;
  const step = values.length > 1 ? (width - 2 * pad) / (values.length - 1) : 0;
  return values.map((v, i) => {
    const x = pad + i * step;
    const y = hi === lo ? height / 2 : pad + (height - 2 * pad) * (1 - (v - lo) / span);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(" ");
}

export function latestMetrics(stage) {
  if (!stage || !stage.metrics) return "";
  return Object.entries(stage.metrics).slice(0, 6)
    .map(([k, v]) => `${shortText(k, 40)} ${shortText(metricText(v), 40)}`).join(" \u00b7 ");
}

export function errorText(error) {
  if (!error) return "";
  const where = error.stage ? ` (stage ${error.stage})` : "";
  return `${error.type || "Error"}: ${error.message || ""}${where}`;
}

/** Whether ``status`` is no older than ``known`` (an action's reply can arrive after
 * the stream's next event). */
export function newer(status, known) {
  return !known || !(Number(known.updated_at) > Number(status.updated_at));
}

export function jsonType(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;  // string, boolean, object
}
