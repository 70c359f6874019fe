// DOM helpers: text only (never HTML), bars, charts, the connection indicator.

import { ACTIVE, RETRYABLE, count, percent, points, shortText } from "./format.js";

export const $ = (selector, root = document) => root.querySelector(selector);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
export function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function drawChart(svg, series, width, height) {
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

/** Stage bars into ``container``: name, a bar per stage (``.bar[data-stage]``), percent. */
export function fillBars(container, stages, withNames) {
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

export function fillBar(bar, stage) {
  const p = percent(stage.fraction);
  const width = `${p === null ? 0 : p.toFixed(1)}%`;
  const fill = bar.firstChild;
  if (fill.style.width !== width) fill.style.width = width;
  if (bar.dataset.state !== stage.state) bar.dataset.state = String(stage.state);
  bar.setAttribute("aria-valuenow", p === null ? "0" : String(Math.floor(p)));
  bar.setAttribute("aria-label", `${shortText(stage.name, 80)}: ${stage.state}`);
}

export function updateActions(root, state) {
  $('button[data-action="cancel"]', root).hidden = !ACTIVE.has(state);
  $('button[data-action="retry"]', root).hidden = !RETRYABLE.has(state);
}

const conn = $("#conn");
export function setConn(state) {
  if (conn.dataset.state !== state) {
    conn.dataset.state = state;
    conn.textContent = state;
  }
}

export function showPageProblem(detail) {
  const node = $("#page-problem");
  node.textContent = detail;
  node.hidden = !detail;
}
