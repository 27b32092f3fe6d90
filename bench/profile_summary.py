"""Summarise a ``py-spy record --format raw`` profile of the server's event-loop thread.

Each line of the raw format is ``frame;frame;...;leaf COUNT`` with frames such as
``invoke_response (modelyard/server/runtime.py:52)`` or ``write (libc.so.6)``. Only the
main (event loop) thread is kept. Shares are of that thread's samples; a sample counts
once for a bucket when any of its frames matches.

Usage: ``python bench/profile_summary.py bench/out/profile.txt [REQ_PER_S]``.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_LINE_NO = re.compile(r":\d+\)$")
MAIN_THREAD = "Server.run (uvicorn/server.py"


@dataclass(frozen=True)
class Bucket:
    key: str
    label: str
    patterns: tuple[str, ...]


# (what the share means, frames that mark it); nested buckets are listed after their parent
BUCKETS: tuple[Bucket, ...] = (
    Bucket("asgi", "ASGI app (Starlette + modelyard)", ("RequestResponseCycle.run_asgi (uvicorn/",)),
    Bucket("route", "modelyard route handler (runtime.invocations)", ("invocations (modelyard/server/runtime.py",)),
    Bucket("model_invoke", "Model.invoke: decode + predict + encode", ("Model.invoke (modelyard/handlers/base.py",)),
    Bucket("predict_py", "XGBoostModel.predict (ctypes glue + C call)", ("XGBoostModel.predict (modelyard/",)),
    Bucket("xgb_c", "XGBoosterPredictFromDense (libxgboost)", ("XGBoosterPredictFromDense",)),
    Bucket(
        "xgb_new_proxy",
        "  new DMatrixProxy per call: Context() reads cgroup files (GetCfsCPUCount)",
        ("xgboost::Context::Context",),
    ),
    Bucket("xgb_setarray", "  DMatrixProxy::SetArray (Context::Init)", ("xgboost::data::DMatrixProxy::SetArray",)),
    Bucket("xgb_predict", "  InplacePredictImpl (JSON args, tree walk, transform)", ("InplacePredictImpl",)),
    Bucket("numpy_ctypes", "numpy ctypes glue (rows.ctypes, np.ctypeslib.as_array)", ("array_ctypes_get", "as_array (")),
    Bucket("decode", "CSV decode (modelyard/codecs.py)", ("decode (modelyard/codecs.py",)),
    Bucket("encode", "CSV encode (modelyard/codecs.py)", ("encode (modelyard/codecs.py",)),
    Bucket("read_body", "read_body (Starlette Request.body)", ("read_body (modelyard/",)),
    Bucket("cache", "ModelCache.acquire/release", ("ModelCache.acquire", "ModelCache.release")),
    Bucket("validate", "validate_target", ("validate_target (modelyard/",)),
    Bucket("metrics", "prometheus_client counters/histograms", ("prometheus_client/",)),
    Bucket("uuid", "uuid4 request id", ("uuid4 (",)),
    Bucket("response", "Starlette Response (init headers + send)", ("Response.__init__ (starlette", "Response.__call__ (starlette")),
    Bucket("socket_write", "socket write (uvloop → write syscall)", ("UVStream_write",)),
    Bucket("socket_read", "socket read (uv__read)", ("uv__read (",)),
    Bucket("http_parse", "HTTP parsing callbacks (httptools)", ("HttpToolsProtocol.data_received",)),
)


def _frames(stack: str) -> list[str]:
    return [_LINE_NO.sub(")", frame) for frame in stack.split(";")]


def summarise(path: Path, requests_per_s: float | None = None, top: int = 12) -> dict[str, object]:
    """Shares of the main thread's samples per bucket, derived shares, and the top leaf frames."""
    total = 0
    other_threads = 0
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        if MAIN_THREAD not in stack:
            other_threads += count
            continue
        total += count
        frames = _frames(stack)
        leaves[frames[-1]] += count
        for bucket in BUCKETS:
            if any(p in f for f in frames for p in bucket.patterns):
                inclusive[bucket.key] += count
    if total == 0:
        return {"samples": 0, "other_thread_samples": other_threads, "buckets": [], "top_self": []}

    def share(key: str) -> float:
        return inclusive[key] / total

    us_per_request = 1e6 / requests_per_s if requests_per_s else None
    rows: list[dict[str, object]] = []
    for bucket in BUCKETS:
        rows.append({"key": bucket.key, "label": bucket.label, "share": share(bucket.key)})
    derived = {
        "outside_asgi": ("uvicorn/httptools/uvloop outside the ASGI app (parse, socket I/O, loop)", 1 - share("asgi")),
        "starlette_only": (
            "Starlette middleware + routing + Request/Response (ASGI app minus the route)",
            share("asgi") - share("route"),
        ),
        "route_outside_model": (
            "modelyard request path outside Model.invoke (body, cache, metrics, request id, response)",
            share("route") - share("model_invoke"),
        ),
    }
    for key, (label, value) in derived.items():
        rows.append({"key": key, "label": label, "share": value})
    for row in rows:
        value = row["share"]
        assert isinstance(value, float)
        row["us_per_request"] = value * us_per_request if us_per_request else None
    return {
        "samples": total,
        "other_thread_samples": other_threads,
        "requests_per_s_during_profile": requests_per_s,
        "buckets": rows,
        "top_self": [{"frame": frame, "share": n / total} for frame, n in leaves.most_common(top)],
    }


def main() -> None:
    rps = float(sys.argv[2]) if len(sys.argv) > 2 else None
    print(json.dumps(summarise(Path(sys.argv[1]), rps), indent=2))


if __name__ == "__main__":
    main()
