// The explorer's browser side: charts from each chart's JSON route (ECharts), the
// freshness badge's clock, the UTC / local-time switch, and the receipt check form.
// Live updates themselves arrive through htmx's SSE extension (see base.html).
"use strict";

const charts = new Map();

function fmtTime(ts, local) {
  const d = new Date(ts * 1000);
  if (local) return d.toLocaleString();
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function localMode() { return localStorage.getItem("idlegrid.tz") === "local"; }

function renderTimes(root) {
  const local = localMode();
  (root || document).querySelectorAll("time[data-ts]").forEach((t) => {
    t.textContent = fmtTime(Number(t.dataset.ts), local);
  });
  const btn = document.getElementById("tz");
  if (btn) btn.textContent = local ? "Local time" : "UTC";
}

function tickBadge() {
  const badge = document.querySelector("#badge .badge");
  if (!badge) return;
  const ago = badge.querySelector(".ago");
  const polled = Number(badge.dataset.polled);
  const mined = Number(badge.dataset.blockTs);
  const now = Date.now() / 1000;
  if (ago && mined) {
    ago.textContent = `mined ${Math.max(0, Math.round(now - mined))} s ago, checked ${Math.max(0, Math.round(now - polled))} s ago`;
  }
  // stale: the explorer has not heard from its index for a while
  badge.classList.toggle("stale", badge.classList.contains("stale") || now - polled > 30);
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

function axisTime() {
  // the span of the data, not ECharts' rounded days around it
  return { type: "time", min: "dataMin", max: "dataMax", splitNumber: 4,
    axisLabel: { hideOverlap: true, formatter: (v) => fmtTime(v / 1000, localMode()).slice(5, 16) } };
}

const builders = {
  price(d) {
    return {
      tooltip: { trigger: "axis" },
      xAxis: axisTime(),
      yAxis: { type: "value", name: "wei / unit", axisLabel: { formatter: (v) => v.toExponential(1) } },
      series: [{ type: "line", name: "price per unit", showSymbol: true,
        data: d.price_history.map((p) => [p.timestamp * 1000, p.price_per_unit_wei]) }],
    };
  },
  hourly(d) {
    const label = (h) => fmtTime(h.hour, localMode()).slice(5, 13) + "h";
    return {
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: d.hourly.map(label) },
      yAxis: { type: "value", name: "tokens" },
      series: [
        { type: "bar", stack: "t", name: "tokens paid", data: d.hourly.map((h) => (h.partial ? null : h.tokens)) },
        { type: "bar", stack: "t", name: "this hour (unfinished)", itemStyle: { opacity: 0.4 }, data: d.hourly.map((h) => (h.partial ? h.tokens : null)) },
      ],
      legend: {},
    };
  },
  earnings(d) {
    let total = 0;
    const cumulative = d.days.map((x) => { total += x.tokens; return [x.day, total]; });
    return {
      tooltip: { trigger: "axis" }, legend: {},
      xAxis: { type: "category", data: d.days.map((x) => x.day) },
      yAxis: { type: "value", name: "tokens" },
      series: [
        { type: "bar", stack: "e", name: "earned (finished days)", data: d.days.map((x) => (x.partial ? null : x.tokens)) },
        { type: "bar", stack: "e", name: "today (unfinished)", itemStyle: { opacity: 0.4 }, data: d.days.map((x) => (x.partial ? x.tokens : null)) },
        { type: "line", name: "cumulative", data: cumulative.map((c) => c[1]) },
      ],
    };
  },
  lineage(d) {
    const short = (h) => h.slice(0, 8) + "…";
    return {
      tooltip: { formatter: (p) => (p.data && p.data.full) || "" },
      series: [{
        type: "graph", layout: "force", roam: true, label: { show: true },
        edgeSymbol: ["none", "arrow"], force: { repulsion: 300, edgeLength: 120 },
        data: d.lineage.nodes.map((n) => ({ name: n.model, full: n.model, value: n.trainer,
          label: { formatter: short(n.model) }, symbolSize: n.self ? 40 : 24,
          itemStyle: { color: n.self ? "#d9480f" : n.known ? "#1c7ed6" : "#adb5bd" } })),
        links: d.lineage.edges.map((e) => ({ source: e.from, target: e.to })),
      }],
    };
  },
  run(d) {
    const who = [...new Set(d.rounds.flatMap((r) => (r.posting ? r.posting.shares.map((s) => s.contributor) : [])))];
    const shares = who.map((c) => ({ type: "bar", stack: "share", name: c.slice(0, 8) + "…", yAxisIndex: 0,
      data: d.rounds.map((r) => { const s = r.posting && r.posting.shares.find((x) => x.contributor === c); return s ? s.share.value : 0; }) }));
    // an unmeasured round is a gap in the line, never a zero
    const accuracy = { type: "line", name: "accuracy", yAxisIndex: 1, connectNulls: false,
      data: d.rounds.map((r) => r.accuracy.value) };
    return {
      tooltip: { trigger: "axis" }, legend: { type: "scroll" },
      xAxis: { type: "category", name: "round", data: d.rounds.map((r) => r.round) },
      yAxis: [{ type: "value", name: "share", max: 1 }, { type: "value", name: "accuracy", max: 1 }],
      series: [...shares, accuracy],
    };
  },
  oracle(d) {
    const rows = d.requests.filter((q) => q.latency_s.value !== null).reverse();
    return {
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", name: "request", data: rows.map((q) => q.request_id) },
      yAxis: { type: "value", name: "seconds" },
      series: [{ type: "bar", name: "ask → callback", data: rows.map((q) => q.latency_s.value) }],
    };
  },
};

function chartUrl(el) {
  let url = el.dataset.src;
  if (el.dataset.chart === "earnings") {
    const form = el.closest("figure").querySelector("form.range");
    const params = new URLSearchParams();
    if (form && form.since.value) params.set("since", form.since.value);
    if (form && form.until.value) params.set("until", form.until.value);
    if ([...params].length) url += "?" + params;
  }
  return url;
}

async function drawChart(el) {
  if (!window.echarts) return;
  try {
    const data = await getJSON(chartUrl(el));
    let chart = charts.get(el);
    const first = !chart || chart.isDisposed();
    if (first) {
      chart = echarts.init(el, null, { renderer: "svg" });
      charts.set(el, chart);
      // drawn: once the first rendering (and its animation) has finished
      chart.on("finished", () => { el.dataset.drawn = "true"; });
    }
    // live redraws replace the data without growing every bar again from zero
    chart.setOption({ ...builders[el.dataset.chart](data), animation: first }, true);
  } catch (err) {
    el.dataset.error = String(err);
    el.textContent = "could not load this chart: " + err;
  }
}

function drawAll(root) {
  (root || document).querySelectorAll(".chart[data-chart]").forEach(drawChart);
}

document.addEventListener("DOMContentLoaded", () => {
  renderTimes();
  drawAll();
  tickBadge();
  setInterval(tickBadge, 1000);
  document.getElementById("tz").addEventListener("click", () => {
    localStorage.setItem("idlegrid.tz", localMode() ? "utc" : "local");
    renderTimes();
  });
  document.querySelectorAll("form.range input").forEach((i) => i.addEventListener("change", () => drawChart(i.closest("figure").querySelector(".chart"))));
  const check = document.getElementById("check");
  if (check) {
    check.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = document.getElementById("check-result");
      let body;
      try { body = JSON.parse(check.receipt.value); } catch (e) { out.textContent = "not JSON: " + e.message; return; }
      const r = await fetch(`/api/channels/${check.dataset.channel}/check-receipt`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const got = await r.json();
      out.textContent = r.ok ? (got.included ? "included under the root ✓" : "NOT under the root ✗") : got.detail;
    });
  }
});

// live: new rows get their times rendered; on each new block, charts refetch their JSON
document.addEventListener("htmx:afterSettle", (ev) => { renderTimes(ev.target); tickBadge(); });
document.addEventListener("htmx:sseMessage", (ev) => {
  if (ev.detail && ev.detail.type === "block") {
    window.idlegridBlocks = (window.idlegridBlocks || 0) + 1;
    drawAll();
  }
});
