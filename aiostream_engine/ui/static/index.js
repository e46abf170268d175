// The Streaming page: summary, timelines and histograms, receivers, engine counters, and
// the active and completed batches; kept current by the live feed.
"use strict";

const SHOWN_ROWS = 100;
const state = { summary: null, rows: new Map(), showAll: false };

async function reloadAll() {
  try {
    const [summary, rows] = await Promise.all([api("api/ui/summary"), api("api/ui/batches")]);
    state.summary = summary;
    state.rows = new Map(rows.map((row) => [row.id, row]));
    document.getElementById("load-error").hidden = true;
    render();
  } catch (error) {
    showError(error);
  }
}

const refreshSummary = throttle(async () => {
  try {
    state.summary = await api("api/ui/summary");
    renderSummary();
    renderStreams();
    renderEngine();
  } catch (error) {
    showError(error);
  }
}, 1000);

const renderSoon = throttle(() => {
  renderBatches();
  renderCharts();
}, 500);

function onMessage(kind, data) {
  if (kind === "batch") {
    state.rows.set(data.id, data);
    const completed = [...state.rows.values()].filter((r) => r.status === "COMPLETED");
    const retained = state.summary ? state.summary.statistics.numRetainedCompletedBatches : 1000;
    if (completed.length > Math.max(retained, 1000)) state.rows.delete(Math.min(...completed.map((r) => r.id)));
    renderSoon();
  }
  refreshSummary();
}

function render() {
  renderSummary();
  renderCharts();
  renderStreams();
  renderEngine();
  renderBatches();
}

// ---- summary ------------------------------------------------------------------------

function renderSummary() {
  const s = state.summary;
  if (!s) return;
  const st = s.statistics;
  document.title = `${s.app.name} - Streaming`;
  setText("app-name", `${s.app.name} (${s.app.id})`);
  const items = [
    ["Batch interval", fmtDuration(s.batchInterval)],
    ["Running since", s.startTime === null ? "not started" : fmtTime(s.startTime)],
    ["Completed batches", fmtNumber(st.numTotalCompletedBatches)],
    ["Failed batches", fmtNumber(s.failedBatches)],
    ["Active batches", fmtNumber(st.numActiveBatches)],
    ["Receivers active", `${st.numActiveReceivers} / ${st.numReceivers}`],
    ["Records received", fmtNumber(st.numReceivedRecords)],
    ["Avg input rate", fmtRate(st.avgInputRate)],
    ["Avg scheduling delay", fmtDuration(ms(st.avgSchedulingDelay))],
    ["Avg processing time", fmtDuration(ms(st.avgProcessingTime))],
    ["Avg total delay", fmtDuration(ms(st.avgTotalDelay))],
  ];
  replace("summary", el("dl", { class: "summary" }, items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v)))));
  const healthy = st.avgProcessingTime === undefined || st.avgProcessingTime / 1000 <= s.batchInterval;
  const badge = document.getElementById("health");
  badge.textContent = healthy ? "processing keeps up with the batch interval" : "processing is slower than the batch interval";
  badge.className = healthy ? "health ok" : "health bad";
}

function ms(value) {
  return value === undefined || value === null ? null : value / 1000;
}

// ---- charts -------------------------------------------------------------------------

function completedRows() {
  return [...state.rows.values()].filter((r) => r.status === "COMPLETED").sort((a, b) => a.id - b.id);
}

function renderCharts() {
  const s = state.summary;
  if (!s) return;
  const rows = completedRows();
  const interval = s.batchInterval;
  const streams = s.streams.map((stream, i) => ({
    name: stream.name,
    color: PALETTE[i % PALETTE.length],
    points: rows.map((r) => [r.time, (r.inputs[String(stream.id)] || 0) / interval]),
  }));
  const metrics = [
    ["Input Rate", streams, null, (v) => `${fmtNumber(v, 1)}/s`, rows.map((r) => r.records / interval), "records/s"],
  ];
  for (const [title, field] of [["Scheduling Delay", "schedulingDelay"], ["Processing Time", "processingTime"], ["Total Delay", "totalDelay"]]) {
    const points = rows.filter((r) => r[field] !== null).map((r) => [r.time, r[field]]);
    metrics.push([title, [{ name: title, color: "#2b7bb9", points }], interval, fmtDuration, points.map((p) => p[1]), ""]);
  }
  const body = metrics.map(([title, series, threshold, fmt, values]) => {
    const mean = values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    return el("tr", { "data-chart": title },
      el("th", { class: "chart-title" }, el("div", {}, title), el("div", { class: "mean" }, `avg ${mean === null ? "-" : fmt(mean)}`),
        series.length > 1 || title === "Input Rate" ? legend(series) : null),
      el("td", {}, timeline(series, { threshold, fmt, label: `${title} timeline` })),
      el("td", {}, histogram(values, { threshold, fmt, label: `${title} histogram` })));
  });
  replace("charts", body);
  paintSwatches(document.getElementById("charts"));
  setText("chart-count", `${rows.length}`);
}

// ---- receivers and inputs -----------------------------------------------------------

function renderStreams() {
  const s = state.summary;
  if (!s) return;
  const rows = completedRows();
  const rate = (stream) => {
    if (!rows.length) return null;
    const total = rows.reduce((sum, r) => sum + (r.inputs[String(stream.id)] || 0), 0);
    return total / rows.length / s.batchInterval;
  };
  replace("streams", s.streams.map((stream) => el("tr", {},
    el("td", {}, stream.name),
    el("td", {}, stream.receiver ? (stream.active ? "ACTIVE" : "INACTIVE") : "no receiver"),
    el("td", {}, stream.location || "-"),
    el("td", { class: "num" }, fmtNumber(stream.records)),
    el("td", { class: "num" }, fmtRate(rate(stream))),
    el("td", { class: "num" }, stream.rateBound === null ? "none" : fmtRate(stream.rateBound)),
    el("td", { class: "num" }, fmtNumber(stream.restarts)),
    el("td", { class: "num" }, fmtNumber(stream.errors)),
    el("td", { class: "num" }, fmtNumber(stream.deadLetters)),
    el("td", { class: "error-cell" }, stream.lastError
      ? [el("div", { class: "when" }, fmtTime(stream.lastErrorTime)), el("pre", { class: "error" }, stream.lastError)]
      : "-"))));
}

// ---- engine counters, state sizes ---------------------------------------------------

function renderEngine() {
  const s = state.summary;
  if (!s) return;
  const e = s.engine;
  const rows = [
    ["Tasks succeeded", fmtNumber(e.tasks.succeeded)],
    ["Task attempts failed", fmtNumber(e.tasks.failed_attempts)],
    ["Task retries", fmtNumber(e.tasks.retries)],
    ["Tasks failed (all attempts)", fmtNumber(e.tasks.failed)],
    ["Worker restarts", fmtNumber(e.tasks.workers_lost)],
    ["Event-loop lag (last / max)", `${fmtDuration(e.loopLag.last)} / ${fmtDuration(e.loopLag.max)}`],
    ["Listener events dropped", fmtNumber(e.listenerEventsDropped)],
    ["Checkpoint writes", e.checkpointWrites === null ? "checkpointing off"
      : fmtNumber(e.checkpointWrites) + (e.checkpointWriteSeconds === null ? "" : `, ${fmtDuration(e.checkpointWriteSeconds)} writing`)],
    ["Pages following live", fmtNumber(s.clients)],
  ];
  for (const w of e.wal) {
    rows.push([`Write-ahead log, stream ${w.stream_id}`, `${fmtNumber(w.appends)} blocks, ${fmtNumber(w.bytes_written)} bytes, ${fmtNumber(w.fsyncs)} fsyncs`]);
  }
  replace("engine", rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
  const states = Object.entries(e.stateSizes);
  replace("state", states.length
    ? states.map(([name, size]) => el("tr", {}, el("td", {}, name), el("td", { class: "num" }, fmtNumber(size))))
    : el("tr", {}, el("td", { colspan: 2 }, "no stateful stream")));
}

// ---- batches ------------------------------------------------------------------------

function batchLink(row) {
  return el("a", { href: `batch?id=${encodeURIComponent(row.id)}`, class: "batch-link" }, fmtTime(row.time, true));
}

function opsCell(row) {
  const text = `${row.opsDone - row.opsFailed}/${row.ops}`;
  return el("td", { class: row.opsFailed ? "num failed" : "num" }, row.opsFailed ? `${text} (${row.opsFailed} failed)` : text);
}

function batchRow(row, active) {
  return el("tr", { "data-batch": row.id, class: row.failure ? "failed-batch" : null },
    el("td", {}, batchLink(row)),
    el("td", { class: "num" }, fmtNumber(row.records)),
    el("td", { class: "num" }, fmtDuration(row.schedulingDelay)),
    el("td", { class: "num" }, active ? (row.status === "PROCESSING" ? "processing" : "queued") : fmtDuration(row.processingTime)),
    active ? null : el("td", { class: "num" }, fmtDuration(row.totalDelay)),
    opsCell(row),
    el("td", { class: "error-cell" }, row.failure ? el("pre", { class: "error" }, row.failure) : "-"));
}

function renderBatches() {
  const all = [...state.rows.values()].sort((a, b) => b.id - a.id);
  const active = all.filter((r) => r.status !== "COMPLETED");
  const completed = all.filter((r) => r.status === "COMPLETED");
  setText("active-count", `${active.length}`);
  setText("completed-count", `${completed.length}`);
  replace("active-batches", active.length ? active.map((r) => batchRow(r, true)) : el("tr", {}, el("td", { colspan: 6 }, "none")));
  const shown = state.showAll ? completed : completed.slice(0, SHOWN_ROWS);
  replace("completed-batches", shown.length ? shown.map((r) => batchRow(r, false)) : el("tr", {}, el("td", { colspan: 7 }, "none yet")));
  const more = document.getElementById("show-all");
  more.hidden = completed.length <= SHOWN_ROWS;
  more.textContent = state.showAll ? `show the newest ${SHOWN_ROWS}` : `show all ${completed.length}`;
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("show-all").addEventListener("click", () => {
    state.showAll = !state.showAll;
    renderBatches();
  });
  follow(onMessage, reloadAll);
  reloadAll();
});
