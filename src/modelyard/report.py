"""Load test results: the summary, the terminal table, a JSON file and an HTML report.

The HTML report is one self-contained file (charts are inline SVG drawn with
matplotlib), so it can be mailed or attached to a ticket and opened anywhere.
"""

from __future__ import annotations

import html
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.loadtest import Result

__all__ = ["summarise", "terminal_table", "write_html", "write_json"]


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(values * 1000, [50, 90, 99])
    return {"count": len(values), "p50": p50, "p90": p90, "p99": p99, "max": float(values.max() * 1000)}


def _over_time(result: Result) -> dict[str, list[float]]:
    """Throughput and latency percentiles over the run, in about 60 steps (0.05 s to 1 s each)."""
    out: dict[str, list[float]] = {"second": [], "rps": [], "p50": [], "p99": []}
    if not len(result.starts):
        return out
    step = min(max(result.wall_seconds / 60, 0.05), 1.0)
    slots = np.floor((result.starts + result.latencies) / step).astype(np.int64)
    for slot in range(int(slots.max()) + 1):
        mask = slots == slot
        latencies = result.latencies[mask] * 1000
        out["second"].append(round(slot * step, 3))
        out["rps"].append(float(mask.sum()) / step)
        out["p50"].append(float(np.percentile(latencies, 50)) if len(latencies) else float("nan"))
        out["p99"].append(float(np.percentile(latencies, 99)) if len(latencies) else float("nan"))
    return out


def summarise(result: Result) -> dict[str, Any]:
    """The numbers a reader wants, as plain JSON-ready data."""
    ok = (result.statuses >= 200) & (result.statuses < 300)
    errors = Counter(code for code, good in zip(result.codes, ok, strict=True) if not good)
    summary: dict[str, Any] = {
        "requests": len(result.latencies),
        "succeeded": int(ok.sum()),
        "errors": dict(errors),
        "seconds": result.wall_seconds,
        "throughput": float(ok.sum() / result.wall_seconds) if result.wall_seconds else 0.0,
        "latency_ms": {
            "all": _percentiles(result.latencies[ok]),
            "cold": _percentiles(result.latencies[ok & result.cold]),
            "warm": _percentiles(result.latencies[ok & ~result.cold]),
        },
        "distinct_models": len(set(result.targets)),
        "client_cpu": result.client_cpu,
        "schedule_lag_ms": result.schedule_lag * 1000,
        "client_bound": result.client_bound,
        "spec": result.spec,
        "error_examples": result.error_examples,
        "over_time": _over_time(result),
    }
    if len(result.metrics) >= 2:
        first, last = result.metrics[0], result.metrics[-1]
        hits, misses = last.hits - first.hits, last.misses - first.misses
        summary["server_hit_ratio"] = hits / (hits + misses) if hits + misses else None
        summary["server_over_time"] = [
            {
                "at": p.at,
                "hit_ratio": (p.hits - first.hits) / max(p.hits - first.hits + p.misses - first.misses, 1),
                "loaded": p.loaded,
            }
            for p in result.metrics
        ]
    warm = result.latencies[ok & ~result.cold]
    summary["client_hit_ratio"] = len(warm) / int(ok.sum()) if ok.sum() else None
    return summary


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def terminal_table(summary: dict[str, Any]) -> str:
    """The summary as a few aligned lines."""
    lines = [
        f"{summary['requests']:,} requests in {summary['seconds']:.1f} s: {summary['throughput']:,.0f} req/s, "
        f"{summary['succeeded']:,} succeeded, {summary['distinct_models']:,} models",
        f"{'latency ms':<10}{'count':>9}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}",
    ]
    for kind in ("all", "cold", "warm"):
        row = summary["latency_ms"][kind]
        lines.append(
            f"{kind:<10}{row['count']:>9,}{_ms(row['p50']):>9}{_ms(row['p90']):>9}{_ms(row['p99']):>9}{_ms(row['max']):>9}"
        )
    if summary["errors"]:
        lines.append("errors: " + ", ".join(f"{code} {n:,}" for code, n in sorted(summary["errors"].items())))
        for code, example in sorted(summary["error_examples"].items()):
            lines.append(f"  first {code}: {example}")
    ratio = summary.get("server_hit_ratio")
    if ratio is not None:
        lines.append(f"cache hit ratio (server): {ratio:.3f}")
    elif summary["client_hit_ratio"] is not None:
        lines.append(
            f"warm share (client-side, first request per model counted cold): {summary['client_hit_ratio']:.3f}"
        )
    if summary["client_bound"]:
        lines.append(
            f"warning: the load generator was the bottleneck (client CPU {summary['client_cpu']:.0%}, "
            f"schedule lag {summary['schedule_lag_ms']:.1f} ms): the server may do better than this."
        )
    return "\n".join(lines)


def write_json(summary: dict[str, Any], path: Path) -> None:
    """The summary as JSON (NaN written as null)."""
    path.write_text(json.dumps(summary, indent=2, default=str).replace("NaN", "null"))


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.find("<svg") :]


def _charts(summary: dict[str, Any], result: Result) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    charts = []
    series = summary["over_time"]
    figure, left = plt.subplots(figsize=(9, 3))
    left.plot(series["second"], series["rps"], color="#1f77b4")
    left.set_xlabel("second")
    left.set_ylabel("requests/s", color="#1f77b4")
    right = left.twinx()
    right.plot(series["second"], series["p50"], color="#2ca02c", label="p50")
    right.plot(series["second"], series["p99"], color="#d62728", label="p99")
    right.set_ylabel("latency ms")
    right.legend(loc="upper right")
    charts.append(("Throughput and latency over time", _svg(figure)))
    plt.close(figure)
    if summary.get("server_over_time"):
        points = summary["server_over_time"]
        figure, left = plt.subplots(figsize=(9, 3))
        left.plot([p["at"] for p in points], [p["hit_ratio"] for p in points], color="#9467bd")
        left.set_ylim(0, 1.05)
        left.set_xlabel("second")
        left.set_ylabel("cache hit ratio", color="#9467bd")
        right = left.twinx()
        right.plot([p["at"] for p in points], [p["loaded"] for p in points], color="#ff7f0e")
        right.set_ylabel("loaded models", color="#ff7f0e")
        charts.append(("Cache hit ratio and loaded models (from the server's metrics)", _svg(figure)))
        plt.close(figure)
    ok = (result.statuses >= 200) & (result.statuses < 300)
    figure, axis = plt.subplots(figsize=(9, 3))
    drawn = 0
    for mask, label, color in ((ok & ~result.cold, "warm", "#2ca02c"), (ok & result.cold, "cold", "#1f77b4")):
        values = result.latencies[mask] * 1000
        if len(values):
            bins = np.logspace(np.log10(max(values.min(), 0.01)), np.log10(values.max() + 0.01), 60).tolist()
            axis.hist(values, bins=bins, alpha=0.6, label=f"{label} ({len(values):,})", color=color)
            drawn += 1
    axis.set_xscale("log")
    axis.set_xlabel("latency ms (log scale)")
    axis.set_ylabel("requests")
    if drawn:
        axis.legend()
    else:  # only successful requests have a latency worth plotting: say so instead of an empty legend
        axis.text(0.5, 0.5, "no successful request", transform=axis.transAxes, ha="center", va="center")
    charts.append(("Latency histogram", _svg(figure)))
    plt.close(figure)
    return charts


def write_html(summary: dict[str, Any], result: Result, path: Path, title: str) -> None:
    """A self-contained HTML report."""
    sections = "\n".join(
        f"<h2>{html.escape(name)}</h2>\n<div class='chart'>{svg}</div>" for name, svg in _charts(summary, result)
    )
    spec = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary["spec"].items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }}
pre {{ background: #f6f8fa; padding: 1em; overflow-x: auto; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 2px 12px 2px 0; }}
.chart svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<pre>{html.escape(terminal_table(summary))}</pre>
<h2>Run</h2><table>{spec}</table>
{sections}
</body></html>
"""
    path.write_text(page)
