"""Per-city XGBoost artifacts for the benchmarks, trained once and kept in bench/out/artifacts.

``ensure_artifacts(n)`` returns the target names (``Houston_TX.tar.gz``...) of the first
``n`` cities of :func:`modelyard.demo.city_names`, training the missing ones on both
cores. ``make_store(dir, targets)`` lays a local folder store out of hard links.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchlib import OUT, log

ARTIFACTS = OUT / "artifacts"


def _train(city: tuple[str, float, float]) -> tuple[str, int]:
    from modelyard.demo import train_city

    data = train_city(city)
    path = ARTIFACTS / f"{city[0]}.tar.gz"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path.name, len(data)


def ensure_artifacts(count: int, workers: int = 2) -> list[str]:
    """Target names of ``count`` distinct artifacts, training those not on disk yet."""
    from modelyard.demo import city_names

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cities = city_names(count)
    missing = [c for c in cities if not (ARTIFACTS / f"{c[0]}.tar.gz").exists()]
    if missing:
        log(f"training {len(missing)} artifacts on {workers} processes...")
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_train, missing, chunksize=16):
                pass
        log(f"trained {len(missing)} artifacts in {time.perf_counter() - started:.1f} s")
    return [f"{c[0]}.tar.gz" for c in cities]


def make_store(folder: Path, targets: list[str]) -> Path:
    """A local folder store holding exactly ``targets`` (hard links to the artifacts)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for target in targets:
        os.link(ARTIFACTS / target, folder / target)
    return folder


def artifact_path(target: str) -> Path:
    return ARTIFACTS / target
