"""Render bench/out/results.json as bench/RESULTS.md (``python bench/report.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "out" / "results.json"
MARKDOWN = BENCH / "RESULTS.md"
KIB = 1024.0
MIB = 1024.0 * 1024.0

Results = dict[str, Any]


def fmt(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:,.{digits}f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def status(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "✅ met" if ok else "❌ missed"


def get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def le(value: Any, limit: float) -> bool | None:
    return None if value is None else bool(value <= limit)


def ge(value: Any, limit: float) -> bool | None:
    return None if value is None else bool(value >= limit)


def machine(r: Results) -> list[str]:
    m = r.get("machine", {})
    packages = ", ".join(f"{k} {v}" for k, v in (m.get("packages") or {}).items())
    rows = [
        ["`nproc`", fmt(m.get("nproc_cmd"))],
        ["CPU (/proc/cpuinfo)", fmt(m.get("cpu_model"))],
        ["RAM", fmt(m.get("ram_gib"), 1, " GiB")],
        ["Python", fmt(m.get("python"))],
        ["Kernel", fmt(m.get("kernel"))],
        ["Date", fmt(m.get("date"))],
        [
            "Code measured",
            f"`{fmt(m.get('git_commit'))}` {fmt(m.get('git_subject'))}"
            + (" (+ uncommitted changes in src/)" if m.get("src_dirty") else ""),
        ],
        ["Packages", packages or "–"],
        ["wrk / SeaweedFS", f"{fmt(m.get('wrk'))} / {fmt(m.get('weed'))}"],
        ["Suite run time", fmt(r.get("total_s"), 0, " s")],
    ]
    checks = r.get("contention") or {}
    seen = []
    for section, check in checks.items():
        busy = check.get("busy") or {}
        seen.append(
            f"{section}: "
            + ", ".join(f"{core} {value:.0%}" for core, value in sorted(busy.items()))
            + (f" (waited {check.get('waited_s')} s)" if check.get("waited_s", 0) >= 5 else "")
        )
    rows.append(["Other work on the cores before each section", "; ".join(seen) or "–"])
    during = other_work_during(r)
    rows.append(
        [
            "Other processes' CPU during each measurement (cores)",
            ", ".join(f"{name} {value:.2f}" for name, value in during.items()) or "–",
        ]
    )
    lines = ["## Machine", "", *table(["", ""], rows)]
    noisy = [name for name, value in during.items() if value > 0.2]
    if noisy or any(not check.get("quiet", True) for check in checks.values()):
        lines += [
            "> ⚠ **The machine was not idle**: other processes used more than 0.2 of a core during "
            f"{', '.join(noisy) or 'a section start'}, so those numbers are pessimistic. Re-run when it is quiet.",
            "",
        ]
    return lines


def other_work_during(r: Results) -> dict[str, float]:
    """Other processes' CPU (in cores) during each reported measurement."""
    found: dict[str, float] = {}
    candidates = {
        "latency": get(r, "latency", "other_work_cores"),
        "throughput (best wrk run)": get(r, "throughput", "wrk", "other_work_cores"),
        "cold local": get(r, "cold", "local", "first", "other_work_cores"),
        "cold local (disk)": get(r, "cold", "local", "disk_cached", "other_work_cores"),
        "cold S3": get(r, "cold", "s3", "first", "other_work_cores"),
        "cold S3 (disk)": get(r, "cold", "s3", "disk_cached", "other_work_cores"),
        "eviction LRU": get(r, "eviction", "policies", "lru", "other_work_cores"),
        "eviction GDSF": get(r, "eviction", "policies", "gdsf", "other_work_cores"),
    }
    for name, value in candidates.items():
        if isinstance(value, int | float):
            found[name] = float(value)
    return found


def section_latency(r: Results) -> list[str]:
    lat = r.get("latency")
    if not lat:
        return ["## 1. Warm latency, one connection", "", "Not measured.", ""]
    ms = lat["ms"]
    rows = [
        ["p50", "≤ 1 ms", fmt(ms["p50"], 3, " ms"), status(le(ms["p50"], 1.0))],
        ["p90", "–", fmt(ms["p90"], 3, " ms"), ""],
        ["p99", "≤ 3 ms", fmt(ms["p99"], 3, " ms"), status(le(ms["p99"], 3.0))],
        ["p99.9 / max", "–", f"{fmt(ms.get('p99.9'), 3)} / {fmt(ms['max'], 3)} ms", ""],
    ]
    wrk = lat.get("wrk_c1") or {}
    wms = wrk.get("ms") or {}
    return [
        "## 1. Warm latency, one connection",
        "",
        f"Server pinned to core 0, client pinned to core 1: {lat['client']}. One model ({lat['target_model']}), "
        f"{fmt(lat['requests'])} requests after 3,000 warm-up requests, {fmt(lat['errors'])} errors. "
        f"Server-side means: model (decode + predict + encode) {fmt(lat['server_model_ms_mean'], 3)} ms, "
        f"overhead {fmt(lat['server_overhead_ms_mean'], 3)} ms.",
        "",
        *table(["percentile", "target", "measured", ""], rows),
        "Cross-check with `wrk -t1 -c1 -d5s --latency` on the same model (its tail varies a lot between "
        "back-to-back runs on this VM, the Python loop's does not): "
        f"{fmt(wrk.get('requests'))} requests, {fmt(wrk.get('requests_per_s'), 0)} req/s, "
        f"p50 {fmt(wms.get('p50'), 3)} ms, p90 {fmt(wms.get('p90'), 3)} ms, p99 {fmt(wms.get('p99'), 3)} ms.",
        "",
    ]


def section_throughput(r: Results) -> list[str]:
    t = r.get("throughput")
    if not t:
        return ["## 2. Warm throughput", "", "Not measured.", ""]
    wrk = t["wrk"]
    bare = t.get("bare") or {}

    def rate(key: str) -> str:
        item = bare.get(key) or {}
        return f"{fmt(item.get('calls_per_s'), 0)} /s ({fmt(item.get('us_per_call'), 1)} µs)"

    rows = [
        ["server: wrk -t1 -c32 -d10s, 10 warm models", fmt(wrk["requests_per_s"], 0) + " req/s", ""],
        ["bare loop: `booster.inplace_predict(np.array(row))`, nthread=1", rate("inplace_predict"), ""],
        ["modelyard model object: `Loader().load(dir).invoke(body, 'text/csv', '')`", rate("modelyard_invoke"), ""],
        [
            "**ratio server ÷ bare loop** (target ≥ 0.6)",
            f"**{fmt(t.get('ratio_vs_inplace_predict'), 2)}**",
            status(ge(t.get("ratio_vs_inplace_predict"), 0.6)),
        ],
        ["ratio server ÷ modelyard model object", fmt(t.get("ratio_vs_modelyard_invoke"), 2), ""],
    ]
    lat = wrk.get("latency_ms") or {}
    pieces = [
        ["`inplace_predict` with a pre-built array", rate("inplace_predict_prebuilt_array")],
        ["modelyard decode (CSV → float32 rows)", rate("modelyard_decode")],
        ["modelyard predict (its XGBoost handler's `predict`)", rate("modelyard_predict")],
        ["modelyard encode (→ CSV)", rate("modelyard_encode")],
        [
            "reference: the same C call with one proxy DMatrix created once and reused (bench/bare_loop.py)",
            rate("experiment_reused_proxy_predict")
            + (
                " (same output)"
                if bare.get("experiment_reused_proxy_matches_inplace_predict")
                else " (DIFFERENT output)"
            ),
        ],
    ]
    return [
        "## 2. Warm throughput",
        "",
        "Server on core 0; wrk on core 1, `post.lua` picks one of 10 warm targets per request. The in-process "
        "loops run on core 0 in the same suite run, with the server stopped (`bench/bare_loop.py`, same model).",
        "",
        *table(["what", "measured", ""], rows),
        "Other work on a machine shows up as bursts during which the same loop runs up to "
        "2× slower), so wrk was run 3 times and the in-process loops 3 times each, and the best run of each is "
        "shown: interference only ever slows a run down. "
        f"wrk req/s of the runs: {', '.join(fmt(v, 0) for v in wrk.get('runs_requests_per_s') or [])} "
        f"(other processes meanwhile: {', '.join(fmt(v, 2) for v in wrk.get('runs_other_work_cores') or [])} "
        "cores); bare-loop calls/s: "
        f"{', '.join(fmt(v, 0) for v in get(bare, 'inplace_predict', 'runs_calls_per_s') or [])} "
        f"(other processes: {', '.join(fmt(v, 2) for v in bare.get('runs_other_work_cores') or [])} cores). "
        f"Best wrk run: {fmt(wrk['requests'])} requests in {fmt(wrk['seconds'], 1)} s, "
        f"{fmt(wrk['non_2xx'])} non-2xx in all runs, "
        f"latency p50 {fmt(lat.get('p50'), 2)} ms, p99 {fmt(lat.get('p99'), 2)} ms at 32 connections; "
        f"{fmt(t.get('server_us_per_request'), 0)} µs of server core per request, of which the server's own "
        f"histograms put {fmt(t.get('server_model_us_mean'), 1)} µs in the model (ModelLatency) and "
        f"{fmt(t.get('server_overhead_us_mean'), 1)} µs in modelyard's handler around it (OverheadLatency); "
        "the rest is uvicorn, httptools and the event loop.",
        "",
        "Pieces of one warm invoke in isolation (core 0, calls/s and µs per call):",
        "",
        *table(["piece", "rate"], pieces),
    ]


def section_cold(r: Results) -> list[str]:
    c = r.get("cold")
    if not c:
        return ["## 3. Cold start", "", "Not measured.", ""]
    rows: list[list[str]] = []
    targets = {("local", "first"): 10.0, ("s3", "first"): 25.0}
    labels = {
        ("local", "first"): "local folder store, first request per model",
        ("s3", "first"): "SeaweedFS S3 store, first request per model",
        ("local", "disk_cached"): "local store, model evicted from memory, artifact on disk cache",
        ("s3", "disk_cached"): "S3 store, model evicted from memory, artifact on disk cache",
    }
    notes: list[str] = []
    for store in ("local", "s3"):
        for kind in ("first", "disk_cached"):
            item = get(c, store, kind)
            label = labels[(store, kind)]
            if not item:
                error = get(c, store, "error")
                rows.append([label, "–", "–", "–", "–", f"not measured{': ' + error if error else ''}"])
                continue
            ms = item["ms"]
            limit = targets.get((store, kind))
            target_text = f"p50 ≤ {limit:g} ms" if limit else "–"
            rows.append(
                [
                    label,
                    target_text,
                    fmt(ms["p50"], 2),
                    fmt(ms["p90"], 2),
                    fmt(ms["p99"], 2),
                    status(le(ms["p50"], limit)) if limit else "",
                ]
            )
            notes.append(
                f"- {label}: {fmt(item['requests'])} requests, {fmt(item['errors'])} errors, "
                f"misses {fmt(item['misses'], 0)}, disk-cache hits {fmt(item['disk_cache_hits'], 0)}; "
                f"server means: download+unpack {fmt(item['server_download_ms_mean'], 2)} ms, "
                f"load {fmt(item['server_load_ms_mean'], 2)} ms, "
                f"request wait {fmt(item['server_wait_ms_mean'], 2)} ms; "
                f"very first request of the server {fmt(item['first_request_ms'], 1)} ms, max {fmt(ms['max'], 1)} ms."
            )
    s3 = c.get("s3") or {}
    extra = (
        f"SeaweedFS (`weed mini`, pinned to core 1) was ready in {fmt(s3.get('weed_ready_s'), 1)} s; "
        f"uploading the 1,000 artifacts took {fmt(s3.get('upload_s'), 1)} s."
        if "weed_ready_s" in s3
        else ""
    )
    return [
        "## 3. Cold start (1,000 distinct models, one connection)",
        "",
        "A fresh server with an empty disk cache gets one request per model (pass 1). Its memory budget holds "
        f"about 100 models ({fmt(c['memory_budget_bytes'] / MIB, 1)} MiB), so a second pass over the same "
        "1,000 models finds each one evicted from memory but still unpacked on the disk cache (pass 2). "
        "These servers run `--eviction lru` so that pass 2 is all misses (under GDSF a few models measured as "
        "nearly free stay resident: see §4b). Latencies are client-side, in ms.",
        "",
        *table(["case", "target", "p50", "p90", "p99", ""], rows),
        *notes,
        "",
        extra,
        "",
    ]


def section_memory(r: Results) -> list[str]:
    m = r.get("memory")
    if not m:
        return ["## 4. Memory", "", "Not measured.", ""]
    a = m.get("load_all") or {}
    ch = m.get("churn") or {}
    ratio = a.get("ratio_rss_to_measured")
    rows = [
        ["models loaded", "2,000", fmt(a.get("loaded_models"), 0), status(a.get("loaded_models") == m.get("models"))],
        [
            "measured size per model (MemoryUsedBytes)",
            "–",
            fmt((a.get("measured_bytes_per_model") or 0) / KIB, 1, " KiB"),
            "",
        ],
        ["RSS growth per model (VmRSS)", "–", fmt((a.get("rss_growth_bytes_per_model") or 0) / KIB, 1, " KiB"), ""],
        ["**RSS growth ÷ measured size**", "≤ 1.5", f"**{fmt(ratio, 2)}**", status(le(ratio, 1.5))],
    ]
    churn_rows = []
    if ch:
        churn_rows = [
            ["budget (200 models)", "–", fmt(ch["budget_bytes"] / MIB, 2, " MiB"), ""],
            ["base RSS (server with 1 model)", "–", fmt(ch["base_rss_bytes"] / MIB, 1, " MiB"), ""],
            [
                "**max RSS** (every 0.2 s)",
                f"≤ budget + base = {fmt(ch['limit_bytes'] / MIB, 1)} MiB",
                f"**{fmt(ch['max_rss_bytes'] / MIB, 1)} MiB**",
                status(ch.get("within_limit")),
            ],
            ["RSS at the end", "–", fmt(ch["end_rss_bytes"] / MIB, 1, " MiB"), ""],
            [
                "models resident at the end",
                f"≈ {fmt(ch.get('budget_models'))}",
                fmt(ch.get("loaded_models_end"), 0),
                status(le(ch.get("loaded_models_end"), 1.1 * (ch.get("budget_models") or 200))),
            ],
            [
                "accounted bytes per resident model at the end",
                f"≈ {fmt((a.get('measured_bytes_per_model') or 0) / KIB, 1)} KiB",
                fmt((ch.get("accounted_bytes_per_resident_end") or 0) / KIB, 1, " KiB"),
                "",
            ],
            [
                "max accounted MemoryUsedBytes (every 1 s)",
                "≤ budget",
                fmt((ch.get("max_memory_used_bytes") or 0) / MIB, 2, " MiB"),
                status(le(ch.get("max_memory_used_bytes"), ch["budget_bytes"])),
            ],
        ]
    series = ", ".join(f"{v:.0f}" for v in (ch.get("rss_series_mib") or []))
    return [
        "## 4. Memory",
        "",
        "One server with an 8 GiB budget loads 2,000 distinct models (one request each). RSS is VmRSS from "
        "/proc/PID/status, taken after the first model (so the one-off import of XGBoost is not counted) and after "
        "the last one; the measured size is the growth of the server's `MemoryUsedBytes`.",
        "",
        *table(["", "target", "measured", ""], rows),
        f"RSS: {fmt(a.get('rss_start_bytes', 0) / MIB, 1)} MiB at start, "
        f"{fmt(a.get('rss_after_first_model_bytes', 0) / MIB, 1)} MiB after the first model, "
        f"{fmt(a.get('rss_after_all_bytes', 0) / MIB, 1)} MiB with all models loaded "
        f"(MemoryUsedBytes {fmt(a.get('memory_used_bytes', 0) / MIB, 1)} MiB). "
        f"Per-model load from the store: p50 {fmt(get(a, 'load_ms', 'p50'), 2)} ms, "
        f"p99 {fmt(get(a, 'load_ms', 'p99'), 2)} ms.",
        "",
        "**Under churn:** a fresh server with a budget of 200 models, `wrk -t1 -c8 -d20s` picking uniformly among "
        "the 2,000 models (artifacts already on the disk cache), RSS sampled every 0.2 s.",
        "",
        *table(["", "target", "measured", ""], churn_rows),
        f"{fmt(ch.get('requests'))} requests ({fmt(ch.get('requests_per_s'), 0)} req/s, "
        f"{fmt(ch.get('non_2xx'))} non-2xx), {fmt(ch.get('loads'), 0)} loads, {fmt(ch.get('evictions'), 0)} "
        f"evictions, {fmt(ch.get('loaded_models_end'), 0)} models resident at the end. "
        f"RSS over the run (MiB): {series}.",
        "",
    ]


def section_sizing(r: Results) -> list[str]:
    sz = r.get("sizing")
    if not sz:
        return []
    clean = get(r, "memory", "load_all", "measured_bytes_per_model")
    rss = get(r, "memory", "load_all", "rss_growth_bytes_per_model")
    labels = {
        "shipped_sequential": "as shipped, 1 request at a time",
        "shipped_concurrent": "as shipped, 8 requests in flight",
    }
    rows = []
    for key, label in labels.items():
        v = sz.get(key)
        if not v:
            continue
        rows.append(
            [
                label,
                fmt(v["loads"]),
                fmt(v["median_measured_bytes"] / KIB, 1),
                fmt(v["under_half_typical"]),
                fmt(v["zero"]),
                fmt(v["resident_end"]),
                fmt((v["accounted_bytes_per_resident"] or 0) / KIB, 1),
            ]
        )
    shipped = sz.get("shipped_concurrent") or {}
    text = [
        "`sizing.measure` takes the growth of the whole process heap (glibc mallinfo2) across one load.",
    ]
    if shipped.get("under_half_typical"):
        text.append(
            f"**(a) Some loads are measured at (nearly) nothing** ({fmt(shipped['under_half_typical'])} of "
            f"{fmt(shipped['loads'])} below half the median, {fmt(shipped['zero'])} at exactly 0): frees elsewhere in "
            "the process during the window (a cyclic GC pass; evictions unloading other models on the event loop "
            "while a worker thread loads) are subtracted from the new model. Such a model is accounted as free, and "
            "GDSF (priority ∝ cost / size) never evicts it."
        )
    median = shipped.get("median_measured_bytes")
    if clean and median and median < 0.85 * clean:
        text.append(
            f"**(b) Under churn the typical model is measured at {fmt(median / KIB, 1)} KiB**, against "
            f"{fmt(clean / KIB, 1)} KiB for the same models loaded without evictions (§4) and "
            f"{fmt((rss or 0) / KIB, 1)} KiB of RSS per model, so the budget admits {clean / median:.1f}× the "
            "models it was sized for. The mechanism is not established here; a likely one is glibc's per-thread "
            "caches (tcache, fastbins), whose chunks mallinfo2 counts as in use when an evicted model frees "
            "them, and not again when the next load reuses them."
        )
    return [
        "### 4b. Why: measured model sizes under churn (in-process)",
        "",
        "`bench/sizing_check.py` drives a `ModelCache` directly (same store, artifacts on the disk cache, budget of "
        f"{fmt(sz['budget_bytes'] / MIB, 2)} MiB = 200 × the size measured in §4) with 2,000 uniformly random "
        "requests over the 2,000 models, recording every `sizing.measure` result.",
        "",
        *table(
            [
                "variant",
                "loads",
                "median measured KiB",
                "loads < ½ median",
                "loads = 0",
                "resident at end (budget: 200)",
                "accounted KiB / resident",
            ],
            rows,
        ),
        " ".join(text),
        "",
    ]


def section_eviction(r: Results) -> list[str]:
    e = r.get("eviction")
    if not e:
        return ["## 5. Eviction", "", "Not measured.", ""]
    rows = []
    policies = e.get("policies", {})
    for name in ("lru", "gdsf"):
        p = policies.get(name)
        if not p:
            continue
        rows.append(
            [
                f"`--eviction {name}`",
                f"**{fmt(p['hit_ratio'], 3)}**",
                fmt(p["hits"], 0),
                fmt(p["misses"], 0),
                fmt(p["loaded_models_end"], 0),
                f"{fmt(p['ms']['p50'], 2)} / {fmt(p['ms']['p99'], 2)}",
                fmt(p["elapsed_s"], 1),
                fmt(p["offline_simulation_hit_ratio_100_slots"], 3),
            ]
        )
    verdict = ""
    inflated = [
        f"{name.upper()} ended with {fmt(p['loaded_models_end'], 0)} models resident"
        for name, p in policies.items()
        if (p.get("loaded_models_end") or 0) > 1.2 * e["budget_models"]
    ]
    caveat = (
        "**Caveat:** "
        + "; ".join(inflated)
        + f" in a budget for {e['budget_models']}: under churn models are measured smaller than they are, some "
        "at nearly nothing (§4b), so more of them stay resident, which inflates the server hit ratios. The "
        "offline simulation (modelyard's own policy classes, exactly 100 "
        "equal slots, same trace) is the like-for-like comparison of the policies."
        if inflated
        else ""
    )
    if "lru" in policies and "gdsf" in policies:
        lru, gdsf = policies["lru"]["hit_ratio"], policies["gdsf"]["hit_ratio"]
        verdict = (
            f"GDSF − LRU = {gdsf - lru:+.3f} hit ratio; GDSF "
            + ("beats" if gdsf > lru else "does not beat")
            + " LRU on this trace in the server"
        )
        sim_lru = policies["lru"]["offline_simulation_hit_ratio_100_slots"]
        sim_gdsf = policies["gdsf"]["offline_simulation_hit_ratio_100_slots"]
        verdict += f", and {sim_gdsf - sim_lru:+.3f} in the offline simulation with exactly 100 slots."
    return [
        "## 5. Eviction: LRU vs GDSF",
        "",
        f"The same Zipf (s = {e['zipf_s']}) trace of {fmt(e['requests'])} requests over {fmt(e['models'])} models "
        f"({fmt(e['distinct_in_trace'])} distinct in the trace) is replayed on one connection against a fresh server "
        f"per policy, with --memory {fmt(e['budget_bytes'])} bytes (100 × the measured model size) and every "
        "artifact already on the disk cache. Hit ratio = ModelCacheHit_total / (hit + miss) from /metrics, "
        "compulsory misses included.",
        "",
        *table(
            [
                "policy",
                "hit ratio",
                "hits",
                "misses",
                "resident at end",
                "p50 / p99 ms",
                "run s",
                "offline sim. (100 slots)",
            ],
            rows,
        ),
        verdict,
        "",
        caveat,
        "",
        f"For reference, the 100 most requested models receive {fmt(e['static_top100_share'], 3)} of the trace "
        "(the hit ratio of an oracle that keeps them resident, minus their first misses).",
        "",
    ]


def profile_paragraph(p: Results, s: Results, bare: Results, t: Results) -> str:
    b = {row["key"]: row for row in s["buckets"]}

    def share(key: str) -> float:
        return float(b[key]["share"]) if key in b else 0.0

    def pct(key: str) -> str:
        return f"{share(key) * 100:.0f}%"

    def bare_us(key: str) -> str:
        return fmt(get(bare, key, "us_per_call"), 1, " µs")

    text = [
        f"py-spy (`record --native`, {p['rate_hz']} Hz, {p['seconds']} s, {s['samples']} samples of the event-loop "
        "thread) on the server under `wrk -c32` over 10 warm models; shares are of that thread's samples. "
        f"**The model call is {pct('model_invoke')} of the server's time** "
        f"(ModelLatency says {fmt(t.get('server_model_us_mean'), 0)} µs of "
        f"{fmt(t.get('server_us_per_request'), 0)} µs per request under wrk). Inside it, "
        f"`XGBoosterPredictFromDense` is {pct('xgb_c')}, but the prediction proper (`InplacePredictImpl`) is "
        f"only {pct('xgb_predict')}:"
    ]
    if share("xgb_new_proxy") > 0.01:
        text.append(
            f"XGBoost builds a new `DMatrixProxy` on every call (modelyard passes a NULL proxy) and its `Context()` "
            f"reads cgroup files (`GetCfsCPUCount`: open/stat/read syscalls) for {pct('xgb_new_proxy')};"
        )
    else:
        text.append("the per-call proxy DMatrix is gone (modelyard reuses one per thread), but")
    text.append(
        f"`SetArray` → `Context::Init` costs {pct('xgb_setarray')}, most of it compiling a `std::regex` in "
        "`MakeDeviceOrd` on every call (upstream XGBoost, not reachable from modelyard)."
    )
    text.append(
        f"numpy's ctypes glue (`ndarray.ctypes`, `np.ctypeslib.as_array`) is {pct('numpy_ctypes')}; "
        f"decode {pct('decode')} and encode {pct('encode')} are cheap."
    )
    if share("starlette") > 0.02:
        text.append(
            f"**Outside the model:** Starlette's middleware, routing and Request/Response objects take "
            f"{pct('starlette')};"
        )
    else:
        text.append("**Outside the model:** Starlette is off the invocation path (raw ASGI handler);")
    parts = [
        ("send", f"sending the response {pct('send')} (the `write` syscall alone {pct('socket_write')})"),
        ("uuid", f"`uuid4` request ids {pct('uuid')} (a `getrandom` syscall each)"),
        ("cache", f"the cache acquire/release {pct('cache')}"),
        ("metrics", f"Prometheus updates {pct('metrics')}"),
        ("read_body", f"reading the body {pct('read_body')}"),
        ("validate", f"target validation {pct('validate')}"),
    ]
    listed = [text_ for key, text_ in parts if share(key) >= 0.005]
    text.append(
        f"modelyard's handler around the model {pct('route_outside_model')}"
        + (": " + ", ".join(listed) if listed else "")
        + f". uvicorn/httptools/uvloop outside the app take {pct('outside_asgi')} (socket reads "
        f"{pct('socket_read')}, HTTP parsing {pct('http_parse')})."
    )
    text.append(
        f"In a tight loop on core 0 the same invoke takes {bare_us('modelyard_invoke')} (predict "
        f"{bare_us('modelyard_predict')}; `inplace_predict` {bare_us('inplace_predict')}; the C call with one "
        f"reused proxy DMatrix {bare_us('experiment_reused_proxy_predict')}): inside the server, between HTTP "
        "work and across 10 models, the model call runs with cold caches and costs about twice as much."
    )
    return " ".join(text)


def section_profile(r: Results) -> list[str]:
    p = r.get("profile") or {}
    s = p.get("summary")
    bare = get(r, "throughput", "bare") or {}
    if not s or not s.get("samples"):
        reason = p.get("error") or p.get("error_raw") or "py-spy failed"
        return ["## Where the time goes", "", f"No profile: {reason}", ""]
    rows = [[row["label"], f"{row['share'] * 100:.1f}%", fmt(row.get("us_per_request"), 1)] for row in s["buckets"]]
    top = [[f"`{row['frame']}`", f"{row['share'] * 100:.1f}%"] for row in s["top_self"]]
    svg = p.get("svg")
    return [
        "## Where the time goes",
        "",
        profile_paragraph(p, s, bare, r.get("throughput") or {}),
        "",
        "Inclusive shares of the event-loop thread's samples (buckets overlap: indented ones are inside the one "
        "above); µs/request = share × the time per request measured without the profiler:",
        "",
        *table(["bucket", "share", "≈ µs/request"], rows),
        "Top frames by self time:",
        "",
        *table(["frame", "self"], top),
        f"Flame graph: `{svg}` (git-ignored); raw stacks: `bench/out/profile.txt`." if svg else "",
        "",
    ]


def section_errors(r: Results) -> list[str]:
    errors = r.get("errors") or {}
    if not errors:
        return []
    lines = ["## Sections that failed", ""]
    for name, text in errors.items():
        lines += [f"**{name}**:", "", "```", text.strip(), "```", ""]
    return lines


def summary(r: Results) -> list[str]:
    rows: list[list[str]] = []

    def add(name: str, target: str, value: Any, ok: bool | None, digits: int = 2, unit: str = "") -> None:
        rows.append([name, target, fmt(value, digits, unit), status(ok)])

    p50 = get(r, "latency", "ms", "p50")
    p99 = get(r, "latency", "ms", "p99")
    add("1. warm latency p50", "≤ 1 ms", p50, le(p50, 1.0), 3, " ms")
    add("1. warm latency p99", "≤ 3 ms", p99, le(p99, 3.0), 3, " ms")
    ratio = get(r, "throughput", "ratio_vs_inplace_predict")
    add("2. throughput ÷ bare loop", "≥ 0.6", ratio, ge(ratio, 0.6))
    local = get(r, "cold", "local", "first", "ms", "p50")
    s3 = get(r, "cold", "s3", "first", "ms", "p50")
    add("3. cold start p50, local store", "≤ 10 ms", local, le(local, 10.0), 2, " ms")
    add("3. cold start p50, SeaweedFS S3", "≤ 25 ms", s3, le(s3, 25.0), 2, " ms")
    mem = get(r, "memory", "load_all", "ratio_rss_to_measured")
    add("4. RSS growth ÷ measured size", "≤ 1.5", mem, le(mem, 1.5))
    within = get(r, "memory", "churn", "within_limit")
    max_rss = get(r, "memory", "churn", "max_rss_bytes")
    add(
        "4. max RSS under churn ≤ budget + base",
        "within",
        max_rss / MIB if max_rss else None,
        within,
        1,
        " MiB",
    )
    resident = get(r, "memory", "churn", "loaded_models_end")
    add("4. models resident after churn (budget 200)", "≈ 200", resident, le(resident, 220), 0)
    lru = get(r, "eviction", "policies", "lru", "hit_ratio")
    gdsf = get(r, "eviction", "policies", "gdsf", "hit_ratio")
    rows.append(
        [
            "5. hit ratio LRU → GDSF",
            "GDSF ≥ LRU",
            f"{fmt(lru, 3)} → {fmt(gdsf, 3)}",
            status(None if lru is None or gdsf is None else gdsf >= lru),
        ]
    )
    sim_lru = get(r, "eviction", "policies", "lru", "offline_simulation_hit_ratio_100_slots")
    sim_gdsf = get(r, "eviction", "policies", "gdsf", "offline_simulation_hit_ratio_100_slots")
    rows.append(
        [
            "5. same, offline simulation with exactly 100 slots",
            "GDSF ≥ LRU",
            f"{fmt(sim_lru, 3)} → {fmt(sim_gdsf, 3)}",
            status(None if sim_lru is None or sim_gdsf is None else sim_gdsf >= sim_lru),
        ]
    )
    return ["## Summary", "", *table(["", "target", "measured", ""], rows)]


def render(r: Results) -> str:
    lines = [
        "# modelyard benchmarks",
        "",
        "Produced by `bash bench/run.sh` (one command: installs wrk and py-spy if missing, trains or reuses 2,000 "
        f"artifacts, runs every section in one go: {fmt(r.get('total_s'), 0)} s in this run). Raw numbers: "
        "`bench/out/results.json`, logs in `bench/out/logs/` (git-ignored). Server pinned to core 0 with "
        "`taskset -c 0`; clients, wrk, py-spy and SeaweedFS on core 1; everything on 127.0.0.1.",
        "",
        *machine(r),
        *summary(r),
        *section_latency(r),
        *section_throughput(r),
        *section_cold(r),
        *section_memory(r),
        *section_sizing(r),
        *section_eviction(r),
        *section_profile(r),
        *section_errors(r),
    ]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    results = json.loads(path.read_text())
    text = render(results)
    # sections other scripts maintain (bench/frameworks.py) live between markers: keep them
    if MARKDOWN.exists():
        old = MARKDOWN.read_text()
        for start, end in (("<!-- frameworks:start -->", "<!-- frameworks:end -->"),):
            if start in old and end in old and start not in text:
                kept = old[old.index(start) : old.index(end) + len(end)]
                text = text.rstrip("\n") + "\n\n" + kept + "\n"
    MARKDOWN.write_text(text)
    print(f"wrote {MARKDOWN}")


if __name__ == "__main__":
    main()
