// The batch page: one batch's times, each input's records and metadata (Kafka offset
// ranges, the rate bound), and each output operation with its tasks' attempts.
"use strict";

const batchId = Number(new URLSearchParams(location.search).get("id"));

async function load() {
  try {
    render(await api(`api/ui/batches/${batchId}`));
    document.getElementById("load-error").hidden = true;
  } catch (error) {
    showError(error);
  }
}

function opStatus(op) {
  if (op.failureReason) return "failed";
  if (op.endTime !== null) return "succeeded";
  return op.startTime !== null ? "running" : "waiting";
}

function render(detail) {
  const b = detail.batch;
  const row = detail.row;
  setText("batch-time", fmtTime(row.time, true));
  document.title = `Batch ${fmtTime(row.time, true)} - aiostream-engine`;
  const items = [
    ["Batch id", String(b.batchId)],
    ["Status", b.status],
    ["Input size", `${fmtNumber(b.inputSize)} records`],
    ["Submitted", fmtTime(detail.submissionTime, true)],
    ["Scheduling delay", fmtDuration(row.schedulingDelay)],
    ["Processing time", fmtDuration(row.processingTime)],
    ["Total delay", fmtDuration(row.totalDelay)],
    ["Output operations", `${b.numCompletedOutputOps} succeeded, ${b.numFailedOutputOps} failed, ${b.numActiveOutputOps} active, ${b.numTotalOutputOps} total`],
  ];
  replace("summary", el("dl", { class: "summary" }, items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v)))));
  replace("inputs", detail.inputs.length ? detail.inputs.map((input) => el("tr", {},
    el("td", {}, input.name),
    el("td", { class: "num" }, fmtNumber(input.records)),
    el("td", {}, Object.keys(input.metadata).length ? metadataView(input.metadata) : "-"))) : el("tr", {}, el("td", { colspan: 3 }, "no input streams")));
  replace("operations", detail.operations.map((op) => el("tr", { class: op.failureReason ? "failed-batch" : null },
    el("td", { class: "num" }, String(op.outputOpId)),
    el("td", {}, op.name),
    el("td", {}, opStatus(op)),
    el("td", {}, fmtTime(op.startTime, true)),
    el("td", { class: "num" }, op.duration === undefined ? "-" : fmtDuration(op.duration / 1000)),
    el("td", { class: "num" }, fmtNumber(op.tasks.succeeded)),
    el("td", { class: "num" }, fmtNumber(op.tasks.failed_attempts)),
    el("td", { class: "num" }, fmtNumber(op.tasks.retries)),
    el("td", { class: "num" }, fmtNumber(op.tasks.failed)),
    el("td", { class: "num" }, fmtNumber(op.tasks.workers_lost)),
    el("td", { class: "error-cell" }, op.failureReason ? el("pre", { class: "error" }, op.failureReason) : "-"))));
}

const reloadSoon = throttle(load, 500);

document.addEventListener("DOMContentLoaded", () => {
  follow((kind, data) => {
    if (kind === "batch" && data.id === batchId) reloadSoon();
  }, load);
  load();
});
