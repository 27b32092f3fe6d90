// modelyard dashboard: polls the stats API of the server that serves this page.
//   stats/series?since=N  every second: new one-second samples for the charts
//   stats                 every 2 s: the tiles and the recent errors
//   stats/models?...      every 3 s and on input: one page of the models table
//   stats/endpoints       once: the endpoints, variants and instances the picker offers
// The page's own ?endpoint=&variant=&instance= choose what it shows; every call carries them.
// URLs are relative, so the page also works behind a path prefix.
(function () {
  "use strict";

  const FIELDS = ["time", "loaded", "loading", "hitRatio", "invocations", "errors", "p50", "p90", "p99",
                  "loads", "evictions", "memoryUsed", "memoryBudget"];
  const KEEP = 900;  // samples kept in the page (15 minutes at one per second)
  const MIB = 1024 * 1024;
  const data = Object.fromEntries(FIELDS.map((f) => [f, []]));
  const table = { sort: "invocations", order: "desc", offset: 0, limit: 50, q: "", state: "", total: 0 };
  const charts = {};
  const page = new URLSearchParams(location.search);
  const scope = {};
  for (const key of ["endpoint", "variant", "instance"]) if (page.get(key)) scope[key] = page.get(key);
  const api = (path, params) => path + "?" + new URLSearchParams({ ...scope, ...(params || {}) });
  let seq = 0;
  let lastUpdate = 0;

  const $ = (id) => document.getElementById(id);
  const num = (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US"));
  const rate = (n) => (n == null ? "–" : n < 10 ? n.toFixed(2) : num(n));
  const ms = (s) => (s == null ? "–" : s * 1000 < 10 ? (s * 1000).toFixed(2) + " ms" : (s * 1000).toFixed(1) + " ms");
  const pct = (r) => (r == null ? "–" : (r * 100).toFixed(1) + " %");

  function bytes(n) {
    if (n == null) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
  }

  function ago(t) {
    if (!t) return "never";
    const s = Math.max(0, Date.now() / 1000 - t);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function text(tag, value, cls) {
    const el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }

  // -- charts -----------------------------------------------------------------

  const fromZero = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];
  const CHARTS = {
    loaded: { title: "Loaded models", y: fromZero, series: [
      { label: "loaded", field: "loaded", stroke: "#2f6fde", fill: "rgba(47,111,222,0.08)" },
      { label: "loading", field: "loading", stroke: "#e3a008" }] },
    hit: { title: "Cache hit ratio (%)", y: () => [0, 100], series: [
      { label: "hit ratio", field: "hitRatio", stroke: "#1c9b4b", scale: 100 }] },
    invocations: { title: "Invocations per second", y: fromZero, series: [
      { label: "invocations/s", field: "invocations", stroke: "#2f6fde" },
      { label: "errors/s", field: "errors", stroke: "#d03b3b" }] },
    latency: { title: "Server latency (ms)", y: fromZero, series: [
      { label: "p50", field: "p50", stroke: "#2f6fde", scale: 1000 },
      { label: "p90", field: "p90", stroke: "#8a5cd6", scale: 1000 },
      { label: "p99", field: "p99", stroke: "#d03b3b", scale: 1000 }] },
    loads: { title: "Loads and evictions per second", y: fromZero, series: [
      { label: "loads/s", field: "loads", stroke: "#1c9b4b" },
      { label: "evictions/s", field: "evictions", stroke: "#d07a1b" }] },
    memory: { title: "Model memory (MiB)", y: fromZero, series: [
      { label: "used", field: "memoryUsed", stroke: "#2f6fde", fill: "rgba(47,111,222,0.08)", scale: 1 / MIB },
      { label: "budget", field: "memoryBudget", stroke: "#6b7385", dash: [6, 4], scale: 1 / MIB }] },
  };

  function chartData(spec) {
    const columns = [data.time];
    for (const s of spec.series) {
      const k = s.scale || 1;
      columns.push(data[s.field].map((v) => (v == null ? null : v * k)));
    }
    return columns;
  }

  function makeCharts() {
    for (const [name, spec] of Object.entries(CHARTS)) {
      const el = $("chart-" + name);
      const opts = {
        title: spec.title,
        width: Math.max(200, el.clientWidth - 12),
        height: 190,
        // at least a minute of time axis, so a fresh page does not zoom into milliseconds
        scales: { x: { time: true, range: (u, min, max) => [Math.min(min, max - 60), max] }, y: { range: spec.y } },
        axes: [{ space: 70, values: (u, ticks) => ticks.map(clock) }, { size: 56 }],
        legend: { live: true },
        series: [{}].concat(spec.series.map((s) => ({
          label: s.label, stroke: s.stroke, fill: s.fill, dash: s.dash, width: 2, spanGaps: false,
          value: (u, v) => (v == null ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(0)),
        }))),
      };
      charts[name] = new uPlot(opts, chartData(spec), el);
    }
    window.addEventListener("resize", () => {
      for (const [name, chart] of Object.entries(charts)) {
        chart.setSize({ width: Math.max(200, $("chart-" + name).clientWidth - 12), height: 190 });
      }
    });
  }

  async function pollSeries() {
    const doc = await getJSON(api("stats/series", { since: seq }));
    seq = doc.seq;
    const added = doc.columns.time.length;
    if (added === 0) return;
    for (const f of FIELDS) {
      data[f].push(...doc.columns[f]);
      if (data[f].length > KEEP) data[f].splice(0, data[f].length - KEEP);
    }
    for (const [name, spec] of Object.entries(CHARTS)) {
      const chart = charts[name];
      chart.setData(chartData(spec));
      if (chart.cursor.left == null || chart.cursor.left < 0) chart.setLegend({ idx: data.time.length - 1 });  // latest values
    }
  }

  // -- tiles and errors -------------------------------------------------------

  async function pollSummary() {
    const s = await getJSON(api("stats"));
    $("endpoint").textContent = s.endpoint + (s.variant ? " · " + s.variant : "") +
      (s.instance != null ? " · instance " + s.instance : " · " + s.instanceCount + " instances");
    $("tile-loaded").textContent = num(s.loadedModels) + (s.loadingModels ? " (+" + s.loadingModels + ")" : "");
    $("tile-hit").textContent = pct(s.cacheHitRatio);
    $("tile-invocations").textContent = num(s.invocations);
    $("tile-errors").textContent = num(s.invocation4XXErrors) + " / " + num(s.invocation5XXErrors);
    $("tile-latency").textContent = ms(s.latency.p50) + " / " + ms(s.latency.p99);
    $("tile-memory").textContent = bytes(s.memoryUsedBytes) + " / " + bytes(s.memoryBudgetBytes);
    const body = $("errors").tBodies[0];
    body.replaceChildren(...s.recentErrors.slice(0, 10).map((e) => {
      const row = document.createElement("tr");
      row.append(text("td", new Date(e.time * 1000).toLocaleTimeString()), text("td", e.status), text("td", e.code),
                 text("td", e.target == null ? "–" : e.target, "target"), text("td", e.message), text("td", e.requestId));
      return row;
    }));
    if (!s.recentErrors.length) {
      const row = document.createElement("tr");
      const cell = text("td", "No errors.", "muted");
      cell.colSpan = 6;
      row.append(cell);
      body.append(row);
    }
  }

  // -- models table -----------------------------------------------------------

  async function pollModels() {
    const doc = await getJSON(api("stats/models", { sort: table.sort, order: table.order, offset: table.offset,
                                                     limit: table.limit, q: table.q, state: table.state }));
    table.total = doc.total;
    $("models-total").textContent = "(" + num(doc.total) + ")";
    const last = Math.min(table.offset + doc.models.length, doc.total);
    $("page").textContent = doc.total ? (table.offset + 1).toLocaleString("en-US") + "–" + last.toLocaleString("en-US") : "0";
    $("prev").disabled = table.offset === 0;
    $("next").disabled = last >= doc.total;
    $("models").tBodies[0].replaceChildren(...doc.models.map((m) => {
      const row = document.createElement("tr");
      row.dataset.target = m.target;
      const state = document.createElement("td");
      state.append(text("span", m.state, "state " + m.state));
      if (m.lastError) state.title = m.lastError;
      row.append(text("td", m.target, "target"), state, text("td", bytes(m.memoryBytes), "num"),
                 text("td", bytes(m.diskBytes), "num"), text("td", num(m.invocations), "num"),
                 text("td", num(m.errors), "num"), text("td", ago(m.lastUsed), "num"), text("td", num(m.loads), "num"),
                 text("td", ms(m.downloadSeconds), "num"), text("td", ms(m.loadSeconds), "num"),
                 text("td", ms(m.latency.p50), "num"), text("td", ms(m.latency.p99), "num"));
      return row;
    }));
    for (const th of document.querySelectorAll("#models th[data-sort]")) {
      th.classList.toggle("sorted", th.dataset.sort === table.sort);
      th.classList.toggle("asc", th.dataset.sort === table.sort && table.order === "asc");
    }
  }

  function bindTable() {
    let timer = 0;
    $("search").addEventListener("input", (event) => {
      clearTimeout(timer);
      timer = setTimeout(() => { table.q = event.target.value; table.offset = 0; refresh(pollModels); }, 250);
    });
    $("state").addEventListener("change", (event) => { table.state = event.target.value; table.offset = 0; refresh(pollModels); });
    $("prev").addEventListener("click", () => { table.offset = Math.max(0, table.offset - table.limit); refresh(pollModels); });
    $("next").addEventListener("click", () => { table.offset += table.limit; refresh(pollModels); });
    for (const th of document.querySelectorAll("#models th[data-sort]")) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        if (table.sort === key) table.order = table.order === "desc" ? "asc" : "desc";
        else { table.sort = key; table.order = key === "target" || key === "state" ? "asc" : "desc"; }
        table.offset = 0;
        refresh(pollModels);
      });
    }
  }

  // -- the endpoint picker ----------------------------------------------------

  async function fillPicker() {
    const doc = await getJSON("stats/endpoints");
    const pick = $("pick");
    const options = [];
    for (const e of doc.endpoints) {
      options.push([e.name + (e.default ? " (default)" : ""), { endpoint: e.name }]);
      const many = e.variants.length > 1 || e.variants.some((v) => v.instances.length > 1);
      if (!many) continue;
      for (const v of e.variants) {
        options.push(["  " + e.name + " · " + v.name, { endpoint: e.name, variant: v.name }]);
        for (const i of v.instances) {
          options.push(["    " + e.name + " · " + v.name + " · instance " + i, { endpoint: e.name, variant: v.name, instance: i }]);
        }
      }
    }
    const key = (o) => [o.endpoint || "", o.variant || "", o.instance || ""].join("/");
    const current = key(scope);
    pick.replaceChildren(...options.map(([label, choice]) => {
      const option = text("option", label);
      option.value = JSON.stringify(choice);
      option.selected = key(choice) === current || (!scope.endpoint && !choice.variant && options[0][1] === choice);
      return option;
    }));
    pick.hidden = options.length < 2;
    pick.addEventListener("change", () => { location.search = "?" + new URLSearchParams(JSON.parse(pick.value)); });
  }

  // -- scheduling -------------------------------------------------------------

  async function refresh(poll) {
    try {
      await poll();
      lastUpdate = Date.now();
      $("status").textContent = "live · updated " + new Date(lastUpdate).toLocaleTimeString();
    } catch (error) {
      $("status").textContent = "disconnected: " + error.message;
    }
  }

  function every(ms, poll) {
    // chained timeouts, not setInterval: a slow answer never piles requests up
    const tick = async () => { if (!document.hidden) await refresh(poll); setTimeout(tick, ms); };
    tick();
  }

  makeCharts();
  bindTable();
  refresh(fillPicker);
  every(1000, pollSeries);
  every(2000, pollSummary);
  every(3000, pollModels);

  // for tests and the curious: the data behind the charts
  window.dashboard = { charts, data, table, samples: () => data.time.length };
})();
