"""Hostile-artifact drill: what a store full of traps does to a running server.

``python bench/drill_artifacts.py`` starts ``modelyard serve`` on loopback (``--memory
64MiB``) over a store holding one good model and a collection of hostile artifacts, then
invokes each hostile one while a well-behaved client keeps invoking the good model. It
prints one line per attempt (what was tried, what came back, how long it took, the
server's RSS after) and, at the end, the well-behaved client's outcome: every one of its
requests must have succeeded and the server must still be up. ``--out FILE`` also writes
the table as Markdown.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
import tarfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchlib import BODY, OUT, log, percentiles, running_server

MIB = 1024**2


def tar_gz(members: dict[str, bytes], *, level: int = 6) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=level) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def bomb(unpacked: int) -> bytes:
    """A .tar.gz of one member of ``unpacked`` zero bytes, streamed through gzip (a few MB)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as zipped:
        header = tarfile.TarInfo("xgboost-model")
        header.size = unpacked
        zipped.write(header.tobuf(format=tarfile.GNU_FORMAT))
        chunk = bytes(MIB)
        for _ in range(unpacked // MIB):
            zipped.write(chunk)
        zipped.write(bytes(unpacked % MIB))
        zipped.write(bytes((512 - unpacked % 512) % 512 + 1024))
    return buffer.getvalue()


def linked(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        archive.addfile(info)
    return buffer.getvalue()


def ubj_deep(depth: int) -> bytes:
    return b"{" + b"i\x07learner" + b"[" * depth + b"]" * depth + b"}"


def hostile(good: bytes) -> dict[str, tuple[str, bytes | None]]:
    """name → (what it is, the artifact bytes; None for a target that names no artifact)."""
    many = {f"f{i}.txt": b"" for i in range(120_000)}
    return {
        "bomb-1_5GB.tar.gz": ("a 1.5 GB decompression bomb (one member of zeros)", bomb(1536 * MIB)),
        "bomb-256MB.tar.gz": ("a 256 MB decompression bomb", bomb(256 * MIB)),
        "deep-json.tar.gz": (
            "an XGBoost model.json nested 100,000 deep",
            tar_gz({"xgboost-model": b'{"learner": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"}),
        ),
        "deep-ubj.tar.gz": ("an XGBoost UBJ model nested 100,000 deep", tar_gz({"xgboost-model": ubj_deep(100_000)})),
        "huge-ubj-count.tar.gz": (
            "a UBJ array claiming 2^62 float32 values",
            tar_gz({"xgboost-model": b"{i\x07learner[$d#L" + (1 << 62).to_bytes(8, "big") + b"}"}),
        ),
        "many-members.tar.gz": ("a tar of 120,000 empty members", tar_gz(many, level=9)),
        "traversal.tar.gz": ("a member named ../../escape", tar_gz({"../../escape": b"x"})),
        "absolute.tar.gz": ("a member named /tmp/owned", tar_gz({"/tmp/owned": b"x"})),
        "symlink-out.tar.gz": ("a symlink to /etc/passwd", linked("xgboost-model", "/etc/passwd")),
        "hardlink-out.tar.gz": ("a hard link to ../../x", linked("xgboost-model", "../../x", tarfile.LNKTYPE)),
        "corrupt.tar.gz": ("gzip magic then garbage", b"\x1f\x8b\x08\x00" + os.urandom(2000)),
        "truncated.tar.gz": ("the good artifact cut in half", good[: len(good) // 2]),
        "pickle.tar.gz": ("a pickled Booster (runs code when loaded)", tar_gz({"xgboost-model": b"\x80\x04N."})),
        "code.tar.gz": (
            "an inference.py (runs code when loaded)",
            tar_gz({"code/inference.py": b"import os\nos.system('touch /tmp/modelyard-owned')\n"}),
        ),
        "empty.tar.gz": ("an archive with no model file", tar_gz({"README": b"hello"})),
        "x" * 300 + ".tar.gz": ("a path segment of 300 bytes", None),
        "missing.tar.gz": ("a target that does not exist", None),
        "../outside.tar.gz": ("a target with ..", None),
    }


def invoke(port: int, target: str, timeout: float = 120.0) -> tuple[int, str, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/endpoints/modelyard/invocations",
        data=BODY,
        method="POST",
        headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": target},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, "", response.read().decode()[:80]
    except urllib.error.HTTPError as error:
        body = json.loads(error.read() or b"{}")
        return error.code, str(body.get("__type", "")), str(body.get("message", ""))[:160]
    except OSError as error:
        return 0, type(error).__name__, str(error)[:160]


class WellBehaved(threading.Thread):
    """Invokes the good model in a loop, recording latency and failures."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.failures: list[tuple[int, str]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            started = time.perf_counter()
            status, code, _ = invoke(self.port, "good.tar.gz", timeout=30)
            self.latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                self.failures.append((status, code))
            time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", default="64MiB")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from modelyard.demo import train_city

    good = train_city(("Houston_TX", 29.76, -95.37))
    store = OUT / "drill-store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    (store / "good.tar.gz").write_bytes(good)
    log("writing the hostile artifacts (the bombs take a few seconds)...")
    cases = hostile(good)
    for name, (_, data) in cases.items():
        if data is not None:
            (store / name).write_bytes(data)
    (store / "link-out.tar.gz").symlink_to("/etc/passwd")
    cases["link-out.tar.gz"] = ("a symlink in the store pointing at /etc/passwd", None)
    disk = OUT / "drill-disk"
    shutil.rmtree(disk, ignore_errors=True)
    rows: list[list[str]] = []
    with running_server(str(store), disk, name="drill-artifacts", memory=args.memory) as server:
        client = WellBehaved(server.port)
        client.start()
        base = server.rss()
        log(f"server RSS {base / MIB:.0f} MiB; invoking each hostile artifact")
        for name, (what, _) in cases.items():
            started = time.perf_counter()
            status, code, message = invoke(server.port, name)
            seconds = time.perf_counter() - started
            alive = server.proc.poll() is None
            rss = server.rss() / MIB if alive else float("nan")
            line = f"{what:<52} {status} {code:<22} {seconds * 1000:8.0f} ms  RSS {rss:6.0f} MiB  {message[:90]}"
            print(line, flush=True)
            rows.append([what, str(status), code, f"{seconds * 1000:.0f} ms", f"{rss:.0f} MiB", message[:120]])
            if not alive:
                print("THE SERVER DIED", flush=True)
                break
        time.sleep(0.5)
        client.stopped.set()
        client.join()
        left = sorted(p.name for p in disk.iterdir() if not p.name.startswith(".")) if disk.exists() else []
        owned = Path("/tmp/modelyard-owned").exists()
    lat = percentiles(client.latencies)
    summary = (
        f"well-behaved client: {len(client.latencies)} requests, {len(client.failures)} failed, "
        f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.0f} ms; "
        f"disk cache entries left: {len(left)}; code from an untrusted artifact ran: {owned}"
    )
    print(summary)
    if args.out:
        table = ["| artifact | status | code | time | RSS after | message |", "|---|---|---|---|---|---|"]
        table += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        args.out.write_text("\n".join([*table, "", summary, ""]))
    if client.failures or owned:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
