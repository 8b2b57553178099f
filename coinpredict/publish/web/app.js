/* coinpredict dashboard: reads only the exported JSON of the same site (docs/deployment.md).
 *
 * Freshness is re-checked here: every age is recomputed from last_closed_candle / last_candle and
 * the thresholds manifest.json publishes (ops.thresholds_seconds), with "now" taken from the
 * server's Date header, and a recomputed state can only make the exported one worse.
 * manifest.json is polled with If-None-Match; a series file is fetched again only when its
 * manifest entry changed.
 */
"use strict";

(function () {
  const POLL_MS = 45000;
  const CANDLES = 120;
  const FUTURE_TOLERANCE_MS = 60000; // as the exporter: a candle closing later than this is corrupt
  const TF_MS = { "1m": 60e3, "1h": 3600e3, "1d": 86400e3, "1w": 604800e3 };
  const RANK = { fresh: 0, stale: 1, unknown: 2, hard_stale: 3, corrupt: 3 };
  const BLOCKED = new Set(["hard_stale", "corrupt", "unknown"]);
  const GLYPH = { fresh: "\u2713", stale: "!", hard_stale: "\u2715", corrupt: "\u2715", unknown: "?" };
  const WORD = { fresh: "fresh", stale: "stale", hard_stale: "hard stale", corrupt: "corrupt", unknown: "unknown" };
  const COLORS = { band95: "#c6dbf7", band80: "#6f9fe0", centre: "#17386b", up: "#2b8a3e", down: "#c92a2a", marker: "#7a4b00" };

  const app = {
    offset: 0, // server clock - this browser's clock (ms)
    etag: null,
    manifest: null,
    manifestError: null,
    status: null,
    statusError: null,
    entries: new Map(), // file -> JSON of its manifest artifact entry
    files: new Map(), // file -> {doc} | {error}
    series: [],
    selected: null,
    chart: null,
  };

  const $ = (id) => document.getElementById(id);
  const now = () => Date.now() + app.offset;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // --- time ---------------------------------------------------------------------------------

  function parseIso(text) {
    if (typeof text !== "string" || !text.endsWith("Z")) return null;
    const ms = Date.parse(text);
    return Number.isFinite(ms) ? ms : null;
  }

  function isoUtc(ms) {
    return new Date(ms).toISOString().replace(".000Z", "Z");
  }

  function addCandles(tf, openMs, n) {
    if (tf === "1M") {
      const d = new Date(openMs);
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + n, 1);
    }
    return openMs + n * TF_MS[tf];
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "-";
    const sign = ms < 0 ? "-" : "";
    let s = Math.floor(Math.abs(ms) / 1000);
    const parts = [];
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
      if (s >= size || (unit === "s" && parts.length === 0)) {
        parts.push(Math.floor(s / size) + unit);
        s %= size;
      }
    }
    return sign + parts.slice(0, 2).join(" ");
  }

  /** The state of a candle (by its open time) at the server's now, as the exporter computes it. */
  function recompute(tf, openIso, kind, what) {
    const th = ((app.manifest || {}).ops || {}).thresholds_seconds || {};
    const t = th[tf];
    const openMs = parseIso(openIso);
    if (!t || openMs === null || !(tf in TF_MS || tf === "1M")) return null;
    const hardS = kind === "prediction" ? t.prediction_hard_limit : t.data_hard_limit;
    if (typeof hardS !== "number" || typeof t.grace !== "number") return null;
    const close = addCandles(tf, openMs, 1);
    const age = now() - close;
    const limit = addCandles(tf, close, 1) - close + t.grace * 1000;
    const hard = hardS * 1000;
    let state = age >= hard ? "hard_stale" : age < limit ? "fresh" : "stale";
    let reason = null;
    if (age < -FUTURE_TOLERANCE_MS) {
      state = "corrupt";
      reason = `${what} ${openIso} closes at ${isoUtc(close)}, in the future by the server's clock`;
    } else if (state !== "fresh") {
      reason = `by the server's clock, ${what} ${openIso} is ${duration(age)} old ` +
        `(fresh below ${duration(limit)}, hard limit ${duration(hard)})`;
    }
    return { state, age: Math.max(age, 0), limit, hard, reason };
  }

  /** The worse of two verdicts {state, reason}; on a tie the first wins unless the second
   * explains more (the page's own reason, with ages and limits, beats a file's short fixed text). */
  function worse(a, b) {
    if (!b || !(b.state in RANK)) return a;
    if (!a || !(a.state in RANK)) return b;
    if (RANK[b.state] === RANK[a.state]) return (b.reason || "").length > (a.reason || "").length ? b : a;
    return RANK[b.state] > RANK[a.state] ? b : a;
  }

  // --- fetching -----------------------------------------------------------------------------

  /** "now" is the server's: the Date of the manifest's answer (fetched with no-store, so never a
   * cached one), kept as an offset from this browser's clock. */
  function takeServerClock(resp) {
    const date = Date.parse(resp.headers.get("Date") || "");
    if (Number.isFinite(date)) app.offset = date - Date.now();
  }

  async function getJson(file, revalidate) {
    let resp;
    try {
      resp = await fetch(file, { cache: revalidate ? "no-cache" : "default" });
    } catch (err) {
      return { error: `${file}: the server did not answer (${err.message})` };
    }
    // not the clock: a revalidated answer may carry the Date of when it was first cached
    if (!resp.ok) return { error: `${file}: HTTP ${resp.status}${resp.status === 404 ? " (missing)" : ""}` };
    const text = await resp.text();
    try {
      return { doc: JSON.parse(text) };
    } catch (err) {
      return { error: `${file}: not valid JSON (truncated or damaged, ${text.length} bytes)` };
    }
  }

  async function pollManifest() {
    const headers = app.etag ? { "If-None-Match": app.etag } : {};
    let resp;
    try {
      resp = await fetch("manifest.json", { cache: "no-store", headers });
    } catch (err) {
      app.manifestError = `manifest.json: the server did not answer (${err.message})`;
      return false;
    }
    takeServerClock(resp);
    if (resp.status === 304) return false;
    if (!resp.ok) {
      app.manifestError = `manifest.json: HTTP ${resp.status}`;
      return true;
    }
    const text = await resp.text();
    let doc;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      app.manifestError = `manifest.json: not valid JSON (truncated or damaged, ${text.length} bytes)`;
      return true;
    }
    if (!doc || !Array.isArray(doc.series)) {
      app.manifestError = "manifest.json: no series list";
      return true;
    }
    app.manifestError = null;
    app.etag = resp.headers.get("ETag");
    app.manifest = doc;
    const changed = new Set();
    const seen = new Map();
    for (const a of doc.artifacts || []) {
      if (!a || typeof a.file !== "string") continue;
      const key = JSON.stringify(a);
      seen.set(a.file, key);
      if (app.entries.get(a.file) !== key) changed.add(a.file);
    }
    app.entries = seen;
    for (const file of changed) app.files.delete(file);
    app.series = doc.series.filter((s) => s && typeof s.symbol === "string" && typeof s.timeframe === "string");
    if (changed.has("status.json") || app.status === null) {
      const got = await getJson("status.json", true);
      app.status = got.doc || app.status;
      app.statusError = got.error || null;
    }
    return true;
  }

  /** The files of ``s`` not read yet (or changed since): both for the series shown, else only
   * the small one that dates it (its prediction; the history when it has none). */
  async function loadSeriesFiles(s, shown) {
    const dating = s.prediction || s.history;
    const wanted = (shown ? [s.history, s.prediction] : [dating]).filter((f) => typeof f === "string");
    await Promise.all(wanted.filter((f) => !app.files.has(f)).map(async (f) => {
      app.files.set(f, await getJson(f, true));
    }));
  }

  // --- per-series verdicts --------------------------------------------------------------------

  const keyOf = (s) => `${s.symbol} ${s.timeframe}`;

  function statusSeries(s) {
    const st = app.status;
    if (!st || !Array.isArray(st.series)) return null;
    // status.json waits for the next full export; do not judge by it a series exported since
    const statusAt = parseIso(st.generated_at);
    for (const file of [s.prediction, s.history]) {
      const entry = app.entries.get(file);
      const at = entry ? parseIso(JSON.parse(entry).generated_at) : null;
      if (at !== null && statusAt !== null && at > statusAt) return null;
    }
    return st.series.find((x) => x && x.symbol === s.symbol && x.timeframe === s.timeframe) || null;
  }

  function verdicts(s) {
    const ss = statusSeries(s);
    const pf = s.prediction ? app.files.get(s.prediction) : null;
    const hf = app.files.get(s.history);
    const pdoc = pf && pf.doc ? pf.doc : null;
    const hdoc = hf && hf.doc ? hf.doc : null;
    const failed = (((app.manifest || {}).ops || {}).series_failed || []).includes(keyOf(s));
    const failedReason = failed ? "the latest export could not read this series; the files shown are the last ones written" : null;
    let data = { state: s.data_freshness, reason: s.data_freshness === "unknown" ? failedReason : null };
    if (ss && ss.data) {
      data = worse(data, { state: ss.data.freshness, reason: ss.data.text });
      data = worse(data, recompute(s.timeframe, ss.data.last_candle, "data", "latest candle"));
    }
    if (hdoc) {
      data = worse(data, { state: hdoc.freshness, reason: hdoc.warning });
      data = worse(data, recompute(s.timeframe, hdoc.last_candle, "data", "latest candle"));
    }
    let pred = null;
    if (s.prediction) {
      pred = { state: s.freshness, reason: s.freshness === "unknown" ? failedReason : null };
      if (ss && ss.prediction) {
        pred = worse(pred, { state: ss.prediction.freshness, reason: ss.prediction.text });
        pred = worse(pred, recompute(s.timeframe, ss.prediction.last_closed_candle, "prediction", "forecast from candle"));
      }
      if (pdoc) {
        pred = worse(pred, { state: pdoc.freshness, reason: BLOCKED.has(pdoc.freshness) ? pdoc.reason : pdoc.warning || pdoc.reason });
        pred = worse(pred, recompute(s.timeframe, pdoc.last_closed_candle, "prediction", "forecast from candle"));
      }
      if (data.state === "corrupt") pred = worse(pred, { state: "corrupt", reason: `data corrupt: ${data.reason || ""}` });
    }
    // a file that cannot be read cannot vouch for its series: unknown, at best
    if (pf && pf.error && pred) pred = worse(pred, { state: "unknown", reason: pf.error });
    if (hf && hf.error) data = worse(data, { state: "unknown", reason: hf.error });
    const errors = [pf, hf].filter((f) => f && f.error).map((f) => f.error);
    const degraded = Boolean(s.degraded || (pdoc && pdoc.degraded));
    const served = pred || data;
    return { data, pred, served, degraded, errors, pdoc, hdoc, ss };
  }

  // --- rendering: banner, chips, ops --------------------------------------------------------

  function manifestAgeCheck() {
    const m = app.manifest;
    if (!m) return null;
    const at = parseIso(m.generated_at);
    const th = (m.ops || {}).thresholds_seconds || {};
    let period = null;
    for (const [tf, t] of Object.entries(th)) {
      const len = tf === "1M" ? 31 * 86400e3 : TF_MS[tf];
      if (!len || !t || typeof t.grace !== "number") continue;
      const p = len + t.grace * 1000;
      period = period === null ? p : Math.min(period, p);
    }
    if (at === null || period === null) return null;
    const age = now() - at;
    return { age, period, old: age > period };
  }

  function renderBanner() {
    const banner = $("banner");
    const m = app.manifest;
    let health = (app.status && app.status.health) || (m && m.ops && m.ops.health) || "unknown";
    if (!["ok", "warning", "critical", "unknown"].includes(health)) health = "unknown";
    const worst = app.series.map((s) => verdicts(s)).reduce((acc, v) => {
      const r = RANK[v.served.state] || 0;
      return Math.max(acc, v.degraded ? Math.max(r, 1) : r);
    }, 0);
    const hRank = { ok: 0, warning: 1, unknown: 2, critical: 3 }[health];
    const fromSeries = ["ok", "warning", "unknown", "critical"][worst];
    if (worst > hRank) health = fromSeries;
    const texts = [];
    const check = manifestAgeCheck();
    if (m) texts.push(`exported ${duration(check ? check.age : null)} ago`);
    if (check && check.old) {
      texts.push(`manifest.json is older than its expected period (${duration(check.period)}): export may have stopped`);
      if (health === "ok") health = "warning";
    }
    if (app.manifestError) {
      texts.push(app.manifestError);
      if (health === "ok" || !m) health = m ? "warning" : "unknown";
    }
    banner.className = `banner health-${health}`;
    banner.dataset.health = health;
    $("health-word").textContent = health.toUpperCase();
    $("health-text").textContent = texts.join(" \u00b7 ") || "";
    const pageError = $("page-error");
    pageError.hidden = !app.manifestError;
    pageError.textContent = app.manifestError ? `Cannot read the index: ${app.manifestError}` : "";
    $("banner").dataset.manifestOld = check && check.old ? "true" : "false";
  }

  function chip(s, v, index) {
    const state = v.served.state in RANK ? v.served.state : "unknown";
    const selected = keyOf(s) === app.selected;
    const node = el("button", {
      class: `chip state-${state}`,
      role: "tab",
      id: `chip-${index}`,
      "aria-selected": selected ? "true" : "false",
      tabindex: selected ? "0" : "-1",
      "data-key": keyOf(s),
      "data-state": state,
      "aria-controls": "detail",
    },
      el("span", { class: "chip-name" }, `${s.symbol} ${s.timeframe}`),
      el("span", { class: "chip-state" }, `${GLYPH[state]} ${WORD[state]}`),
    );
    if (v.degraded) node.append(el("span", { class: "badge degraded", title: "last good forecast; predict failed" }, "degraded"));
    if (v.errors.length) node.append(el("span", { class: "badge file-error" }, "file error"));
    node.addEventListener("click", () => select(keyOf(s), false));
    return node;
  }

  function renderChips() {
    const box = $("chips");
    const focused = document.activeElement && box.contains(document.activeElement);
    box.replaceChildren(...app.series.map((s, i) => chip(s, verdicts(s), i)));
    if (focused) {
      const sel = box.querySelector('[aria-selected="true"]');
      if (sel) sel.focus();
    }
  }

  function onChipKey(event) {
    const chips = Array.from($("chips").querySelectorAll(".chip"));
    const i = chips.indexOf(document.activeElement);
    if (i < 0) return;
    const moves = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: chips.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const j = (moves[event.key] + chips.length) % chips.length;
    select(chips[j].dataset.key, true);
  }

  function cell(text, cls) {
    return el("td", cls ? { class: cls } : {}, text === null || text === undefined ? "-" : text);
  }

  function stateCell(state) {
    const s = state in RANK ? state : "unknown";
    return el("td", {}, el("span", { class: `state-text state-${s}` }, `${GLYPH[s]} ${WORD[s]}`));
  }

  function ageCell(r) {
    if (!r) return cell("-");
    return cell(`${duration(r.age)} (fresh < ${duration(r.limit)}, hard ${duration(r.hard)})`);
  }

  function outcomeCell(x) {
    if (!x) return cell("-");
    return cell(`${x.status || "-"}${x.at ? " at " + x.at : ""}${x.error ? ": " + x.error : ""}`);
  }

  function renderOps() {
    const body = $("ops-body");
    const st = app.status;
    const parts = [];
    if (app.statusError) parts.push(el("p", { class: "alert", role: "alert" }, app.statusError));
    if (!st) {
      body.replaceChildren(...parts, el("p", { class: "muted" }, "status.json not read."));
      return;
    }
    const influx = st.influxdb || {};
    parts.push(el("p", { id: "ops-influx" },
      "InfluxDB: ", el("strong", {}, influx.reachable ? "reachable" : "UNREACHABLE"),
      influx.error ? ` (${influx.error})` : "", ` \u00b7 status.json generated ${st.generated_at || "-"}`));
    const rows = (st.series || []).map((x) => {
      const d = x.data || {};
      const p = x.prediction;
      return el("tr", {},
        cell(`${x.symbol} ${x.timeframe}`),
        stateCell(d.freshness), ageCell(recompute(x.timeframe, d.last_candle, "data", "latest candle")),
        p ? stateCell(p.freshness) : cell("-"),
        p ? ageCell(recompute(x.timeframe, p.last_closed_candle, "prediction", "forecast from candle")) : cell("-"),
        outcomeCell(x.ingest), outcomeCell(x.predict));
    });
    parts.push(table("ops-series", "Series: ages by the server's clock against their limits",
      ["series", "data", "data age", "prediction", "prediction age", "last ingest", "last predict"], rows));
    const jobs = Object.entries(st.jobs || {}).map(([name, j]) => el("tr", {},
      cell(name), cell(j.last_outcome), cell(j.last_end), cell(j.last_success),
      cell(fmtNum(j.duration_p50_s, "s")), cell(fmtNum(j.duration_p95_s, "s")),
      cell(typeof j.failure_rate === "number" ? `${(j.failure_rate * 100).toFixed(1)} %` : null), cell(j.runs)));
    parts.push(table("ops-jobs", "Jobs (last 100 runs)",
      ["job", "last outcome", "last end", "last success", "p50", "p95", "failure rate", "runs"], jobs));
    const problems = (st.problems || []).map((p) => el("li", {}, p));
    // the page's own reason (age and limits by the server's clock) where it has one, else the
    // file's fixed text: the public files carry no error messages
    const why = (v, tf, at, kind, what) => {
      if (!v || !v.text) return null;
      const r = recompute(tf, at, kind, what);
      return (r && r.reason) || v.text;
    };
    const reasons = (st.series || []).flatMap((x) => [
      [x.data && why(x.data, x.timeframe, x.data.last_candle, "data", "latest candle"), "data"],
      [x.prediction && why(x.prediction, x.timeframe, x.prediction.last_closed_candle, "prediction", "forecast from candle"), "prediction"],
    ].filter(([r]) => r).map(([r, kind]) => `${x.symbol} ${x.timeframe} ${kind}: ${r}`)).map((t) => el("li", {}, t));
    const all = problems.concat(reasons);
    parts.push(el("h3", {}, "Problems"), all.length ? el("ul", { id: "ops-problems" }, ...all) : el("p", { id: "ops-problems" }, "none"));
    body.replaceChildren(...parts);
  }

  function fmtNum(x, unit) {
    return typeof x === "number" ? `${x.toFixed(2)} ${unit}` : null;
  }

  function table(id, caption, head, rows) {
    return el("table", { id },
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...rows));
  }

  // --- rendering: one series ----------------------------------------------------------------

  function stateLine(label, r, extra) {
    const s = r && r.state in RANK ? r.state : "unknown";
    return el("p", { class: "state-line", "data-kind": label.toLowerCase() },
      `${label}: `, el("span", { class: `state-text state-${s}` }, `${GLYPH[s]} ${WORD[s]}`), extra || "");
  }

  function ageText(tf, iso, kind, what) {
    const r = recompute(tf, iso, kind, what);
    return r ? ` \u00b7 ${what} ${iso}, ${duration(r.age)} old (fresh below ${duration(r.limit)}, hard limit ${duration(r.hard)})` : "";
  }

  function renderDetail(s) {
    const box = $("detail");
    if (app.chart) {
      app.chart.destroy();
      app.chart = null;
    }
    if (!s) {
      box.replaceChildren(el("p", { class: "muted" }, "No series in manifest.json."));
      return;
    }
    const v = verdicts(s);
    const tf = s.timeframe;
    const parts = [el("h2", { id: "detail-title" }, `${s.symbol} \u00b7 ${tf}`)];
    box.setAttribute("aria-labelledby", "detail-title");
    box.dataset.key = keyOf(s);
    box.dataset.state = v.served.state;
    if (v.pred) parts.push(stateLine("Prediction", v.pred, v.pdoc ? ageText(tf, v.pdoc.last_closed_candle, "prediction", "forecast from candle") : ""));
    parts.push(stateLine("Data", v.data, v.hdoc ? ageText(tf, v.hdoc.last_candle, "data", "latest candle") : ""));
    if (v.degraded) {
      parts.push(el("p", { class: "badge-line" }, el("span", { class: "badge degraded" }, "degraded"),
        " last good forecast; predict failed", v.pdoc && v.pdoc.warning ? ` (${v.pdoc.warning})` : ""));
    }
    for (const err of v.errors) parts.push(el("p", { class: "alert file-error", role: "alert" }, `Cannot show this file: ${err}`));
    const served = v.served;
    if (BLOCKED.has(served.state) && v.errors.includes(served.reason)) {
      parts[parts.length - 1].append(" No forecast is drawn.");
    } else if (BLOCKED.has(served.state)) {
      const what = v.pred ? "Forecast blocked" : "Data blocked";
      parts.push(el("p", { class: "alert blocked", role: "alert" },
        `${what} (${WORD[served.state]}): ${served.reason || (v.pdoc && v.pdoc.reason) || "no reason given"}. No forecast is drawn.`));
    } else if (served.state === "stale" || v.data.state === "stale") {
      const text = (v.pdoc && v.pdoc.warning) || (v.hdoc && v.hdoc.warning) || served.reason || v.data.reason;
      const said = (text || "older than its fresh limit").replace(/^stale: /, "");
      parts.push(el("p", { class: "warn stale", role: "status" }, `Stale: ${said}`));
    }
    const chartBox = el("div", { id: "chart", class: "chart", role: "img" });
    const legend = el("div", { id: "legend", class: "legend" });
    parts.push(chartBox, legend);
    const steps = el("div", { id: "steps" });
    parts.push(steps);
    box.replaceChildren(...parts);

    const candles = v.hdoc && Array.isArray(v.hdoc.candles) ? v.hdoc.candles.slice(-CANDLES) : [];
    const preds = !BLOCKED.has(served.state) && v.pdoc && Array.isArray(v.pdoc.predictions) ? v.pdoc.predictions : [];
    drawChart(chartBox, legend, s, v, candles, preds);
    steps.replaceChildren(preds.length ? stepTable(v.pdoc, preds) : el("p", { class: "muted" }, "No forecast steps served."));
  }

  function stepTable(doc, preds) {
    const pct = (x) => `${Math.round(x * 100)} %`;
    const f = price;
    return table("step-table", `Forecast steps (UTC; timestamp = open time of the forecast candle)`,
      ["step", "timestamp (UTC)", "close", `${pct(doc.interval)} lower`, `${pct(doc.interval)} upper`,
        `${pct(doc.interval_95 || 0.95)} lower`, `${pct(doc.interval_95 || 0.95)} upper`],
      preds.map((p, i) => el("tr", {}, cell(i + 1), cell(p.timestamp), cell(f(p.close), "num"),
        cell(f(p.lower), "num"), cell(f(p.upper), "num"), cell(f(p.lower_95), "num"), cell(f(p.upper_95), "num"))));
  }

  /** A price as the files have it, to 8 significant digits. */
  function price(x) {
    if (typeof x !== "number") return "-";
    const s = x.toPrecision(8);
    return s.includes("e") || !s.includes(".") ? s : s.replace(/\.?0+$/, "");
  }

    function centreLabel(doc, preds, candles) {
    const last = candles.length ? candles[candles.length - 1].close : null;
    const flat = last !== null && preds.every((p) => p.close === last);
    const name = doc.model && doc.model.name;
    if (flat) return `centre line: the last close (${price(last)}); model ${name} serves the last close as its point forecast`;
    return `centre line: the point forecast of model ${name}`;
  }

  function legendItem(cls, text) {
    return el("span", { class: "legend-item" }, el("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), text);
  }

  function drawChart(box, legend, s, v, candles, preds) {
    const tf = s.timeframe;
    const doc = v.pdoc;
    const items = [legendItem("sw-candle", "candles (open, high, low, close)")];
    if (preds.length) {
      items.push(legendItem("sw-centre", centreLabel(doc, preds, candles)),
        legendItem("sw-80", `${Math.round(doc.interval * 100)} % interval`),
        legendItem("sw-95", `${Math.round((doc.interval_95 || 0.95) * 100)} % interval`));
    }
    const lastIso = doc && doc.last_closed_candle ? doc.last_closed_candle : v.hdoc && v.hdoc.last_candle;
    if (lastIso) items.push(legendItem("sw-marker", `last closed candle ${lastIso}`));
    items.push(legendItem("sw-now", `now (the server's clock) ${isoUtc(Math.floor(now() / 1000) * 1000)}`));
    if (doc && doc.model && doc.model.name) {
      items.push(el("span", { class: "legend-item legend-model" },
        `model ${doc.model.name} ${doc.model.version || ""} \u00b7 issued ${doc.issued_at || "-"}`));
    }
    legend.replaceChildren(...items);
    if (!candles.length && !preds.length) {
      box.replaceChildren(el("p", { class: "muted" }, "No candles to draw."));
      return;
    }
    const xs = [];
    const rows = [];
    for (const c of candles) {
      const t = parseIso(c.timestamp);
      if (t === null) continue;
      xs.push(t / 1000);
      rows.push({ c });
    }
    const lastClose = candles.length ? candles[candles.length - 1].close : null;
    if (preds.length && lastClose !== null && rows.length) {
      // the fan starts at the last closed candle, pinched to its close
      Object.assign(rows[rows.length - 1], { u95: lastClose, l95: lastClose, u80: lastClose, l80: lastClose, mid: lastClose });
    }
    for (const p of preds) {
      const t = parseIso(p.timestamp);
      if (t === null) continue;
      xs.push(t / 1000);
      rows.push({ u95: p.upper_95 ?? p.upper, l95: p.lower_95 ?? p.lower, u80: p.upper, l80: p.lower, mid: p.close });
    }
    const col = (k) => rows.map((r) => (r[k] === undefined ? null : r[k]));
    let lo = Infinity;
    let hi = -Infinity;
    for (const r of rows) {
      for (const x of [r.c && r.c.low, r.c && r.c.high, r.l95, r.u95]) {
        if (typeof x === "number") { lo = Math.min(lo, x); hi = Math.max(hi, x); }
      }
    }
    const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.01 || 1;
    const markerX = lastIso ? parseIso(lastIso) / 1000 : null;
    const nowS = now() / 1000;
    const stepS = (TF_MS[tf] || 30 * 86400e3) / 1000;
    const none = { show: false };
    const opts = {
      width: Math.max(320, box.clientWidth || 900),
      height: 340,
      legend: none,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      // up to the server's now: a series that stopped shows the empty time since
      scales: { x: { time: true, range: (u, a, b) => [a - stepS, Math.max(b + stepS, nowS + stepS / 2)] }, y: { range: () => [lo - pad, hi + pad] } },
      series: [
        {},
        { label: "95 % upper", stroke: COLORS.band95, width: 0, points: none },
        { label: "95 % lower", stroke: COLORS.band95, width: 0, points: none },
        { label: "80 % upper", stroke: COLORS.band80, width: 0, points: none },
        { label: "80 % lower", stroke: COLORS.band80, width: 0, points: none },
        { label: "centre", stroke: COLORS.centre, width: 2, points: none },
      ],
      bands: [
        { series: [1, 2], fill: COLORS.band95 },
        { series: [3, 4], fill: COLORS.band80 },
      ],
      axes: [
        { stroke: "#333", grid: { stroke: "#eee" }, space: 100, values: (u, splits) => splits.map(utcTick) },
        { stroke: "#333", grid: { stroke: "#eee" }, size: 70 },
      ],
      hooks: { draw: [(u) => drawCandlesAndMarker(u, rows, markerX, nowS)] },
    };
    app.chart = new uPlot(opts, [xs, col("u95"), col("l95"), col("u80"), col("l80"), col("mid")], box);
    box.setAttribute("aria-label", `${s.symbol} ${tf}: ${candles.length} candles` +
      (preds.length ? `, forecast fan of ${preds.length} steps` : ", no forecast drawn"));
    box.dataset.fan = preds.length ? "true" : "false";
    box.dataset.candles = String(candles.length);
  }

  /** An x-axis label in UTC, 24 h: the date at midnight, else the time. */
  function utcTick(s) {
    const iso = isoUtc(s * 1000);
    return iso.slice(11, 16) === "00:00" ? iso.slice(0, 10) : iso.slice(11, 16);
  }

    function drawCandlesAndMarker(u, rows, markerX, nowS) {
    const ctx = u.ctx;
    const xs = u.data[0];
    const px = (i) => u.valToPos(xs[i], "x", true);
    const py = (y) => u.valToPos(y, "y", true);
    const n = rows.filter((r) => r.c).length;
    const body = Math.max(1, Math.min(12, (u.bbox.width / Math.max(n, 1)) * 0.6));
    ctx.save();
    ctx.font = `${12 * devicePixelRatio}px sans-serif`;
    for (let i = 0; i < rows.length; i++) {
      const c = rows[i].c;
      if (!c) continue;
      const x = Math.round(px(i));
      ctx.strokeStyle = ctx.fillStyle = c.close >= c.open ? COLORS.up : COLORS.down;
      ctx.beginPath();
      ctx.moveTo(x + 0.5, py(c.high));
      ctx.lineTo(x + 0.5, py(c.low));
      ctx.stroke();
      const top = py(Math.max(c.open, c.close));
      const h = Math.max(1, py(Math.min(c.open, c.close)) - top);
      ctx.fillRect(x - body / 2, top, body, h);
    }
    const labelTop = u.bbox.top + 14 * devicePixelRatio;
    const labelBottom = u.bbox.top + u.bbox.height - 6 * devicePixelRatio;
    if (markerX !== null && Number.isFinite(markerX)) vline(u, markerX, COLORS.marker, [4, 3], "last closed candle", labelTop);
    vline(u, nowS, "#777", [1, 3], "now", labelBottom);
    ctx.restore();
  }

  /** A vertical line across the plot at time ``xs`` with a label left of it at height ``y``. */
  function vline(u, xs, color, dash, label, y) {
    const ctx = u.ctx;
    const x = Math.round(u.valToPos(xs, "x", true)) + 0.5;
    ctx.strokeStyle = ctx.fillStyle = color;
    ctx.setLineDash(dash);
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.textAlign = "right";
    ctx.fillText(label, x - 4, y);
  }

  // --- flow -----------------------------------------------------------------------------------

  async function select(key, focus) {
    app.selected = key;
    if (location.hash !== "#" + encodeURIComponent(key)) history.replaceState(null, "", "#" + encodeURIComponent(key));
    const s = app.series.find((x) => keyOf(x) === key);
    renderChips();
    if (focus) {
      const node = $("chips").querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (node) node.focus();
    }
    if (s) await loadSeriesFiles(s, true);
    if (app.selected !== key) return; // another series was chosen meanwhile
    renderChips();
    renderBanner();
    renderDetail(s);
  }

  async function refresh() {
    const changed = await pollManifest();
    if (!app.selected || !app.series.some((s) => keyOf(s) === app.selected)) {
      const wanted = decodeURIComponent(location.hash.slice(1));
      const s = app.series.find((x) => keyOf(x) === wanted) || app.series[0];
      app.selected = s ? keyOf(s) : null;
    }
    const s = app.series.find((x) => keyOf(x) === app.selected);
    if (s) await loadSeriesFiles(s, true);
    renderBanner();
    renderChips();
    renderOps();
    if (changed || !document.querySelector("#detail h2")) renderDetail(s);
    if (!document.body.dataset.ready) {
      document.body.dataset.ready = "true"; // interactive: chips, the series shown, ops
      document.body.dataset.readyMs = String(Math.round(performance.now()));
    }
    // then date every other series by its own file (the chips' re-check at the server's clock)
    await Promise.all(app.series.filter((x) => x !== s).map((x) => loadSeriesFiles(x, false)));
    renderBanner();
    renderChips();
    document.body.dataset.checked = "true";
    document.body.dataset.checkedMs = document.body.dataset.checkedMs || String(Math.round(performance.now()));
  }

  async function start() {
    $("chips").addEventListener("keydown", onChipKey);
    window.addEventListener("hashchange", () => {
      const key = decodeURIComponent(location.hash.slice(1));
      if (key !== app.selected && app.series.some((s) => keyOf(s) === key)) select(key, false).catch(showCrash);
    });
    try {
      await refresh();
    } finally {
      document.body.dataset.ready = "true";
      document.body.dataset.checked = "true";
    }
    setInterval(() => { refresh().catch(showCrash); }, POLL_MS);
    // ages move between polls: re-render the verdicts once a minute from the server's clock
    setInterval(() => { renderBanner(); renderChips(); }, 60000);
  }

  function showCrash(err) {
    const box = $("page-error");
    box.hidden = false;
    box.textContent = `The page failed: ${err && err.message ? err.message : err}`;
  }

  if (typeof uPlot === "undefined") {
    showCrash("the chart library (vendor/uplot) did not load");
  }
  start().catch(showCrash);
})();
