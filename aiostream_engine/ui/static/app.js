// Shared by the Streaming page and the batch page: building elements, formatting, the
// JSON API, the live feed, and the SVG charts. Text always goes in as text nodes
// (never innerHTML): stream names, errors and metadata are user text.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#2b7bb9", "#e07b39", "#3a9a5b", "#b8484b", "#7d5ba6", "#8c6d3f", "#c45ca2", "#5f6b73"];

// Sets the attributes that have a value and appends the children (strings as text).
function fill(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

function replace(id, ...children) {
  const target = document.getElementById(id);
  target.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

function setText(id, text) {
  document.getElementById(id).textContent = text;
}

// ---- formatting ---------------------------------------------------------------------

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

function fmtTime(epochSeconds, withMillis = false) {
  if (epochSeconds === null || epochSeconds === undefined) return "-";
  const d = new Date(epochSeconds * 1000);
  const day = `${d.getFullYear()}/${pad(d.getMonth() + 1)}/${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `${day} ${time}${withMillis ? "." + pad(d.getMilliseconds(), 3) : ""}`;
}

function fmtClock(epochSeconds) {
  const d = new Date(epochSeconds * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtNumber(n, digits = 0) {
  if (n === null || n === undefined) return "-";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function fmtRate(n) {
  return n === null || n === undefined ? "-" : `${fmtNumber(n, 2)} records/s`;
}

// ---- the JSON API and the live feed -------------------------------------------------

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

// Calls onMessage(kind, data) for each message; onOpen() whenever the feed (re)connects
// or the server says "reload" (it had too much to send), so the page reloads what it may
// have missed. Shows the state in #live.
function follow(onMessage, onOpen) {
  const badge = document.getElementById("live");
  const source = new EventSource("api/ui/events");
  const show = (text, cls) => {
    badge.textContent = text;
    badge.className = `live ${cls}`;
  };
  source.addEventListener("open", () => {
    show("live", "on");
    onOpen();
  });
  source.addEventListener("error", () => show("reconnecting", "off"));
  source.addEventListener("reload", () => onOpen());
  for (const kind of ["batch", "receiver"]) {
    source.addEventListener(kind, (event) => onMessage(kind, JSON.parse(event.data)));
  }
  window.addEventListener("pagehide", () => source.close());
  return source;
}

// Runs fn at most once per `ms`, the last call winning.
function throttle(fn, ms) {
  let timer = null;
  let again = false;
  return () => {
    if (timer !== null) {
      again = true;
      return;
    }
    fn();
    timer = setTimeout(() => {
      timer = null;
      if (again) {
        again = false;
        fn();
      }
    }, ms);
  };
}

// ---- charts (SVG) -------------------------------------------------------------------

const CHART = { width: 460, height: 150, left: 56, right: 12, top: 10, bottom: 24 };

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

// series: [{name, color, points: [[x, y], ...]}]; threshold: a y drawn as the line not to
// cross (the batch interval); fmt: formats a y value.
function timeline(series, { threshold = null, fmt = String, label = "" } = {}) {
  const { width, height, left, right, top, bottom } = CHART;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const chart = svg("svg", { class: "chart timeline", viewBox: `0 0 ${width} ${height}`, role: "img" });
  chart.appendChild(svg("title", {}, label));
  const yMax = niceMax(Math.max(0, ...ys, threshold !== null ? threshold * 1.2 : 0));
  const xMin = xs.length ? Math.min(...xs) : 0;
  const xMax = xs.length ? Math.max(...xs) : 1;
  const x = (v) => left + (xMax === xMin ? (width - left - right) / 2 : ((v - xMin) / (xMax - xMin)) * (width - left - right));
  const y = (v) => top + (1 - v / yMax) * (height - top - bottom);
  chart.appendChild(svg("line", { class: "axis", x1: left, y1: y(0), x2: width - right, y2: y(0) }));
  chart.appendChild(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: y(0) }));
  for (const v of [0, yMax / 2, yMax]) {
    chart.appendChild(svg("text", { class: "tick", x: left - 4, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  if (xs.length) {
    chart.appendChild(svg("text", { class: "tick", x: left, y: height - 6 }, fmtClock(xMin)));
    chart.appendChild(svg("text", { class: "tick", x: width - right, y: height - 6, "text-anchor": "end" }, fmtClock(xMax)));
  } else {
    chart.appendChild(svg("text", { class: "empty", x: width / 2, y: height / 2, "text-anchor": "middle" }, "no completed batch yet"));
  }
  if (threshold !== null) {
    chart.appendChild(svg("line", { class: "threshold", x1: left, y1: y(threshold), x2: width - right, y2: y(threshold) }));
    chart.appendChild(svg("text", { class: "threshold-label", x: width - right - 2, y: y(threshold) - 4, "text-anchor": "end" }, `batch interval ${fmt(threshold)}`));
  }
  for (const s of series) {
    if (!s.points.length) continue;
    const path = s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    chart.appendChild(svg("polyline", { class: "series", points: path, stroke: s.color }));
    for (const p of s.points.slice(-60)) {
      chart.appendChild(svg("circle", { class: "point", cx: x(p[0]).toFixed(1), cy: y(p[1]).toFixed(1), r: 2, fill: s.color },
        svg("title", {}, `${s.name}: ${fmt(p[1])} at ${fmtClock(p[0])}`)));
    }
  }
  return chart;
}

function histogram(values, { threshold = null, fmt = String, label = "", bins = 12 } = {}) {
  const { width, height, left, right, top, bottom } = CHART;
  const chart = svg("svg", { class: "chart histogram", viewBox: `0 0 ${width} ${height}`, role: "img" });
  chart.appendChild(svg("title", {}, label));
  const vMax = niceMax(Math.max(0, ...values, threshold !== null ? threshold * 1.2 : 0));
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor((v / vMax) * bins))] += 1;
  const cMax = Math.max(1, ...counts);
  const bw = (width - left - right) / bins;
  const y = (c) => top + (1 - c / cMax) * (height - top - bottom);
  chart.appendChild(svg("line", { class: "axis", x1: left, y1: y(0), x2: width - right, y2: y(0) }));
  counts.forEach((c, i) => {
    if (!c) return;
    chart.appendChild(svg("rect", { class: "bar", x: (left + i * bw + 1).toFixed(1), y: y(c).toFixed(1), width: (bw - 2).toFixed(1), height: (y(0) - y(c)).toFixed(1) },
      svg("title", {}, `${c} batches in ${fmt((i * vMax) / bins)} .. ${fmt(((i + 1) * vMax) / bins)}`)));
  });
  chart.appendChild(svg("text", { class: "tick", x: left - 4, y: y(cMax) + 4, "text-anchor": "end" }, `${cMax}`));
  chart.appendChild(svg("text", { class: "tick", x: left - 4, y: y(0) + 4, "text-anchor": "end" }, "0"));
  chart.appendChild(svg("text", { class: "tick", x: left, y: height - 6 }, fmt(0)));
  chart.appendChild(svg("text", { class: "tick", x: width - right, y: height - 6, "text-anchor": "end" }, fmt(vMax)));
  if (threshold !== null) {
    const tx = left + (threshold / vMax) * (width - left - right);
    chart.appendChild(svg("line", { class: "threshold", x1: tx, y1: top, x2: tx, y2: y(0) }));
  }
  return chart;
}

function legend(series) {
  return el("ul", { class: "legend" }, series.map((s) =>
    el("li", {}, el("span", { class: "swatch", "data-color": s.color }), s.name)));
}

// Legends carry their colour as data (no inline style under the page's CSP).
function paintSwatches(root) {
  for (const node of root.querySelectorAll(".swatch")) {
    node.style.background = node.dataset.color;
  }
}

function metadataView(value) {
  if (Array.isArray(value) && value.length && value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
    const keys = [...new Set(value.flatMap((v) => Object.keys(v)))];
    return el("table", { class: "metadata" },
      el("thead", {}, el("tr", {}, keys.map((k) => el("th", {}, k)))),
      el("tbody", {}, value.map((row) => el("tr", {}, keys.map((k) => el("td", {}, formatValue(row[k])))))));
  }
  if (value && typeof value === "object") {
    return el("dl", { class: "metadata" }, Object.entries(value).map(([k, v]) => [el("dt", {}, k), el("dd", {}, metadataView(v))]));
  }
  return document.createTextNode(formatValue(value));
}

function formatValue(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") return fmtNumber(value, 3);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function showError(error) {
  const box = document.getElementById("load-error");
  if (box) {
    box.textContent = `Could not load: ${error.message}`;
    box.hidden = false;
  }
}
