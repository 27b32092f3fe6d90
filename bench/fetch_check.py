"""Cost of getting an artifact onto the disk tier: a small one, a large one, a bomb.

Run pinned to one core: ``taskset -c 0 python bench/fetch_check.py [--small 400]``;
prints one JSON object on stdout.

* ``small``: a cold :meth:`modelyard.artifacts.DiskCache.fetch` of a ~11 KiB XGBoost
  ``model.tar.gz`` from a local folder store (a distinct target each time, so every
  fetch downloads and unpacks): median wall time and mean CPU time per fetch (CPU of
  every thread of the process, the unpacking thread included).
* ``large``: one fetch of a ``.tar.gz`` holding a 128 MiB incompressible file: wall
  time and the peak growth of the resident set while it runs (sampled every 2 ms).
* ``bomb``: a ~2 MiB ``.tar.gz`` whose members unpack to 2 GiB of zeros, under a
  256 MiB unpacked limit: time until it is refused, peak RSS growth, bytes left on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import statistics
import tarfile
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from modelyard import sizing
from modelyard.artifacts import DiskCache
from modelyard.demo import city_names, train_city
from modelyard.store import open_store

MIB = 1024 * 1024


def bomb_bytes(members: int, member_size: int) -> bytes:
    """A valid ``.tar.gz`` of ``members`` zero-filled files, built without compressing every byte.

    Each member's zeros are compressed once and the deflate blocks repeated: a full
    flush makes the blocks independent of what came before.
    """
    zeros = bytes(member_size)
    body = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = body.compress(zeros) + body.flush(zlib.Z_FULL_FLUSH)
    headers = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"]
    crc, total = 0, 0
    for i in range(members):
        info = tarfile.TarInfo(f"part-{i:05d}.bin")
        info.size = member_size
        header = info.tobuf(format=tarfile.GNU_FORMAT)
        out.append(headers.compress(header) + headers.flush(zlib.Z_FULL_FLUSH))
        out.append(block)
        crc = zlib.crc32(header, crc)
        crc = zlib.crc32(zeros, crc)  # member_size is a multiple of 512: no padding
        total += len(header) + member_size
    end = bytes(2 * tarfile.BLOCKSIZE)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    out.append(tail.compress(end) + tail.flush(zlib.Z_FINISH))
    crc = zlib.crc32(end, crc)
    total += len(end)
    out.append(crc.to_bytes(4, "little") + (total & 0xFFFFFFFF).to_bytes(4, "little"))
    return b"".join(out)


class PeakRss:
    """Samples the resident set on a thread while the block runs."""

    def __init__(self) -> None:
        self.base = sizing.rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, sizing.rss_bytes())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, sizing.rss_bytes())


async def small(work: Path, count: int) -> dict[str, Any]:
    data = train_city(city_names(1)[0])
    store_dir = work / "small-store"
    store_dir.mkdir()
    for i in range(count):
        (store_dir / f"m{i:05d}.tar.gz").write_bytes(data)
    store = open_store(str(store_dir))
    disk = DiskCache(work / "small-disk", 10 * 1024**3, max_unpacked=4 * 1024**3)
    for i in range(20):  # warm-up: imports, thread pool, allocator
        disk.release(await disk.fetch(store, f"m{i:05d}.tar.gz"))
    walls = []
    cpu_started = time.process_time()
    for i in range(20, count):
        started = time.perf_counter()
        disk.release(await disk.fetch(store, f"m{i:05d}.tar.gz"))
        walls.append(time.perf_counter() - started)
    cpu = (time.process_time() - cpu_started) / len(walls)
    return {
        "artifact_bytes": len(data),
        "fetches": len(walls),
        "wall_p50_us": round(statistics.median(walls) * 1e6, 1),
        "wall_p90_us": round(statistics.quantiles(walls, n=10)[-1] * 1e6, 1),
        "cpu_mean_us": round(cpu * 1e6, 1),
    }


async def large(work: Path) -> dict[str, Any]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        content = os.urandom(128 * MIB)
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
        del content
    store_dir = work / "large-store"
    store_dir.mkdir()
    (store_dir / "large.tar.gz").write_bytes(buffer.getvalue())
    size = buffer.tell()
    del buffer
    store = open_store(str(store_dir))
    disk = DiskCache(work / "large-disk", 10 * 1024**3, max_unpacked=4 * 1024**3)
    with PeakRss() as rss:
        started = time.perf_counter()
        disk.release(await disk.fetch(store, "large.tar.gz"))
        wall = time.perf_counter() - started
    return {
        "artifact_bytes": size,
        "unpacked_bytes": 128 * MIB,
        "wall_s": round(wall, 3),
        "peak_rss_growth_mib": round((rss.peak - rss.base) / MIB, 1),
    }


async def bomb(work: Path) -> dict[str, Any]:
    data = bomb_bytes(256, 8 * MIB)
    store_dir = work / "bomb-store"
    store_dir.mkdir()
    (store_dir / "bomb.tar.gz").write_bytes(data)
    store = open_store(str(store_dir))
    disk_dir = work / "bomb-disk"
    disk = DiskCache(disk_dir, 10 * 1024**3, max_unpacked=256 * MIB)
    error = ""
    with PeakRss() as rss:
        started = time.perf_counter()
        try:
            await disk.fetch(store, "bomb.tar.gz")
        except Exception as exc:  # noqa: BLE001 - the refusal is what is measured
            error = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - started
    left = sum(p.stat().st_size for p in disk_dir.rglob("*") if p.is_file() and not p.name.startswith(".modelyard"))
    return {
        "artifact_bytes": len(data),
        "unpacked_bytes": 256 * 8 * MIB,
        "refused_after_s": round(wall, 3),
        "peak_rss_growth_mib": round((rss.peak - rss.base) / MIB, 1),
        "bytes_left_on_disk": left,
        "error": error[:200],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=400, help="cold fetches of the small artifact")
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelyard-fetch-"))
    try:
        result: dict[str, Any] = {"small": await small(work, args.small)}
        if not args.skip_large:
            result["large"] = await large(work)
            result["bomb"] = await bomb(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
