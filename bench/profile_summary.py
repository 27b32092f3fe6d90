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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_LINE_NO = re.compile(r":\d+\)$")
MAIN_THREAD = "Server.run (uvicorn/server.py"


def _func(frame: str) -> str:
    return frame.split(" (", 1)[0]


def _in(path: str, *names: str) -> Callable[[str], bool]:
    """Frames of a function whose name contains one of ``names`` (any name when empty) in ``path``."""

    def match(frame: str) -> bool:
        return f"({path}" in frame and (not names or any(n in _func(frame) for n in names))

    return match


def _any(*needles: str) -> Callable[[str], bool]:
    return lambda frame: any(n in frame for n in needles)


@dataclass(frozen=True)
class Bucket:
    key: str
    label: str
    match: Callable[[str], bool]


# (what the share means, which frames mark it); indented labels are inside the bucket above.
# Matching is by file and function name so that it follows refactors of the request path.
BUCKETS: tuple[Bucket, ...] = (
    Bucket(
        "asgi", "ASGI app (everything uvicorn hands the request to)", _any("RequestResponseCycle.run_asgi (uvicorn/")
    ),
    Bucket("route", "modelyard request handler (modelyard/server/runtime.py)", _in("modelyard/server/runtime.py")),
    Bucket("model_invoke", "model: decode + predict + encode (modelyard/handlers/)", _in("modelyard/handlers/")),
    Bucket("predict_py", "  XGBoost handler predict (ctypes glue + C call)", _in("modelyard/handlers/xgboost.py")),
    Bucket("xgb_c", "    XGBoosterPredictFromDense (libxgboost)", _any("XGBoosterPredictFromDense")),
    Bucket(
        "xgb_new_proxy",
        "      new DMatrixProxy per call: Context() reads cgroup files (GetCfsCPUCount)",
        _any("xgboost::Context::Context"),
    ),
    Bucket("xgb_setarray", "      DMatrixProxy::SetArray (Context::Init)", _any("DMatrixProxy::SetArray")),
    Bucket("xgb_predict", "      InplacePredictImpl (JSON args, tree walk, transform)", _any("InplacePredictImpl")),
    Bucket(
        "numpy_ctypes",
        "    numpy ctypes glue (ndarray.ctypes, np.ctypeslib.as_array)",
        _any("array_ctypes_get", "as_array ("),
    ),
    Bucket("decode", "  decode (modelyard/codecs.py)", _in("modelyard/codecs.py", "decode", "rows")),
    Bucket("encode", "  encode (modelyard/codecs.py)", _in("modelyard/codecs.py", "encode")),
    Bucket("read_body", "read the request body", _in("modelyard/server/", "read_body")),
    Bucket("cache", "ModelCache acquire/release (modelyard/cache.py)", _in("modelyard/cache.py")),
    Bucket("validate", "validate_target", _any("validate_target (modelyard/")),
    Bucket("metrics", "prometheus_client counters/histograms", _any("(prometheus_client/")),
    Bucket("uuid", "uuid4 request id", _any("uuid4 (")),
    Bucket("starlette", "Starlette (routing, middleware, Request/Response objects)", _any("(starlette/")),
    Bucket(
        "send",
        "response send (uvicorn RequestResponseCycle.send, incl. socket write)",
        _any("RequestResponseCycle.send ("),
    ),
    Bucket("socket_write", "  socket write (uvloop UVStream_write → write syscall)", _any("UVStream_write")),
    Bucket("socket_read", "socket read (uv__read)", _any("uv__read (")),
    Bucket("http_parse", "HTTP parsing callbacks (httptools)", _any("HttpToolsProtocol.data_received")),
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
            if any(bucket.match(f) for f in frames):
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
        "framework_only": (
            "ASGI layers between uvicorn and modelyard's handler (ASGI app minus the handler)",
            share("asgi") - share("route"),
        ),
        "route_outside_model": (
            "modelyard's handler outside the model (body, cache, metrics, request id, response send)",
            share("route") - share("model_invoke"),
        ),
    }
    for key, (label, value) in derived.items():
        rows.append({"key": key, "label": label, "share": value})
    for row in rows:
        fraction = row["share"]
        assert isinstance(fraction, float)
        row["us_per_request"] = fraction * us_per_request if us_per_request else None
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
