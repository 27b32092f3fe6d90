"""Fuzz the native loaders modelyard hands untrusted bytes to, each case in a forked child.

Real models of every kind (XGBoost JSON and UBJSON: regressor, multiclass,
categorical, dart, gblinear, vector-leaf, forest; LightGBM text: regressor,
multiclass, categorical, linear; ONNX) are mutated: a value set to a boundary
(-1, 0, 2^31, 2^63-1, NaN...), an array cut or grown, a key dropped, a line
duplicated, bytes flipped. Each mutant is loaded in a forked child, as modelyard
loads it (``guarded``: its checks first, then the handler, then predictions) or as
the frameworks load it on their own (``raw``). A child killed by a signal is a crash
the server would not survive; its input is kept in ``bench/out/hostile/crashers``.

The parent never runs a framework itself (base models are trained in a subprocess):
a child forked after OpenMP started can hang.
"""

from __future__ import annotations

import copy
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.handlers.hostile import Typed, as_json, ubj_decode, ubj_encode  # noqa: E402

OUT = ROOT / "bench" / "out" / "hostile"
XGBOOST_KINDS = ("regressor", "multiclass", "categorical", "dart", "linear", "multitarget", "forest")
LIGHTGBM_KINDS = ("regressor", "multiclass", "categorical", "linear")
INTS = [-(2**63), -(2**31), -1000, -2, -1, 0, 1, 2, 7, 14, 15, 100, 255, 65535, 2**31 - 1, 2**31, 2**63 - 1]
FLOATS = [float("nan"), float("inf"), -float("inf"), 1e38, -1e38, 0.0]
TEXT_VALUES = ["-2147483648", "-1", "0", "1", "2", "7", "100", "2147483647", "99999999999", "nan", "inf", ""]
OUTCOMES = ("loaded", "refused", "raised", "killed")
_BUILD = """
import sys
from pathlib import Path
from tests.fixtures import onnx_bytes
from tests.handlers.hostile import lightgbm_model, xgboost_model
out = Path(sys.argv[1])
for kind in {xgboost}:
    (out / f"xgboost-{{kind}}.ubj").write_bytes(xgboost_model(kind, "ubj"))
for kind in {lightgbm}:
    (out / f"lightgbm-{{kind}}.txt").write_bytes(lightgbm_model(kind))
for kind in ("regressor", "classifier"):
    (out / f"onnx-{{kind}}.onnx").write_bytes(onnx_bytes(0, kind))
"""


def build_bases(folder: Path) -> None:
    """Train the base models in a subprocess (see module doc)."""
    folder.mkdir(parents=True, exist_ok=True)
    code = _BUILD.format(xgboost=XGBOOST_KINDS, lightgbm=LIGHTGBM_KINDS)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(folder)], check=True, env=env, cwd=ROOT)


# -- mutations ------------------------------------------------------------------------


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


def mutate_document(document: Any, rng: random.Random) -> Any:
    """One or two edits of a decoded XGBoost model (typed arrays stay typed)."""
    document = copy.deepcopy(document)
    for _ in range(rng.choice((1, 1, 2))):
        path = rng.choice(_paths(document)[1:])
        parent, key = _parent(document, path), path[-1]
        value = parent[key]
        roll = rng.random()
        if roll < 0.08 and isinstance(parent, dict):
            del parent[key]
        elif isinstance(value, Typed) and value.values and roll < 0.7:
            pool: list[float] = [*FLOATS, *INTS] if value.kind in "dD" else [*INTS]
            value.values[rng.randrange(len(value.values))] = rng.choice(pool)
            bits = {"i": 8, "U": 8, "I": 16, "l": 32, "L": 64}.get(value.kind)
            if bits:  # wrap into the element type, as a writer would
                value.values = [((v + 2 ** (bits - 1)) % 2**bits) - 2 ** (bits - 1) for v in value.values]
                if value.kind == "U":
                    value.values = [v % 256 for v in value.values]
        elif isinstance(value, Typed):
            value.values = value.values[: rng.randrange(len(value.values) + 1)] if roll < 0.85 else value.values * 2
        elif isinstance(value, str):
            parent[key] = str(rng.choice(INTS)) if roll < 0.8 else rng.choice(["", "[1e40]", "x" * 100])
        elif isinstance(value, bool) or value is None:
            parent[key] = rng.choice([0, "1", []])
        elif isinstance(value, int | float):
            parent[key] = rng.choice(INTS + FLOATS)
        elif isinstance(value, list):
            parent[key] = value[: rng.randrange(len(value) + 1)] if roll < 0.85 else value + value[:2]
        elif isinstance(value, dict):
            parent[key] = rng.choice([{}, [], "x"])
    return document


def mutate_text(text: str, rng: random.Random) -> str:
    """One or two edits of a LightGBM text model: a value, an array's length, a line."""
    lines = text.split("\n")
    for _ in range(rng.choice((1, 1, 2))):
        at = rng.randrange(len(lines))
        roll = rng.random()
        if "=" in lines[at] and roll < 0.75:
            key, value = lines[at].split("=", 1)
            tokens = value.split(" ")
            if rng.random() < 0.8:
                tokens[rng.randrange(len(tokens))] = rng.choice(TEXT_VALUES)
            else:
                tokens = tokens[: rng.randrange(len(tokens) + 1)] if rng.random() < 0.5 else tokens + tokens[:2]
            lines[at] = key + "=" + " ".join(tokens)
        elif roll < 0.85:
            del lines[at]
        else:
            lines.insert(at, lines[rng.randrange(len(lines))])
    return "\n".join(lines)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """A few bytes of a protobuf set, flipped, cut or inserted."""
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4))):
        at, roll = rng.randrange(len(out)), rng.random()
        if roll < 0.5:
            out[at] = rng.randrange(256)
        elif roll < 0.75:
            out[at] ^= 1 << rng.randrange(8)
        elif roll < 0.9:
            del out[at : at + rng.randint(1, 8)]
        else:
            out[at] = rng.choice((0x00, 0x7F, 0x80, 0xFF))
    return bytes(out)


# -- one case in a child ---------------------------------------------------------------


def _child(framework: str, path: Path, guarded: bool) -> int:
    """Load and predict as modelyard would (guarded) or as the framework alone would; an exit code."""
    import numpy as np

    from modelyard.handlers.structure import StructureError

    data = path.read_bytes()
    try:
        if guarded:
            from modelyard.handlers.lightgbm_checks import prepare_model_text
            from modelyard.handlers.onnx_checks import check_external_data
            from modelyard.handlers.xgboost import check_xgboost_model

            checks = {"xgboost": check_xgboost_model, "lightgbm": prepare_model_text}
            checks.get(framework, lambda d: check_external_data(d, path.parent))(data)
    except StructureError:
        return 10
    try:
        if guarded:
            from modelyard.handlers import HANDLERS

            model = HANDLERS[framework].load(path, trusted=False)
            width = model.num_features or 6
            predict = model.predict
        else:
            predict, width = _raw(framework, path, data)
        rng = np.random.default_rng(0)
        for rows in (np.zeros((2, width)), np.full((2, width), np.nan), rng.uniform(-1e4, 1e4, (20, width))):
            predict(rows)
    except Exception:  # noqa: BLE001 - any error is an error, not a crash
        return 3
    return 0


def _raw(framework: str, path: Path, data: bytes) -> tuple[Any, int]:
    """The framework's own load, as modelyard did it before its checks."""
    import numpy as np

    if framework == "xgboost":
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        booster.set_param({"nthread": 1})
        return lambda rows: booster.inplace_predict(np.asarray(rows, dtype=np.float32)), booster.num_features() or 6
    if framework == "lightgbm":
        import lightgbm as lgb

        lgb_booster = lgb.Booster(model_file=str(path))
        return lambda rows: lgb_booster.predict(rows, num_threads=1), lgb_booster.num_feature() or 6
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name, shape = session.get_inputs()[0].name, session.get_inputs()[0].shape
    width = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else 6
    return lambda rows: session.run(None, {name: np.asarray(rows, dtype=np.float32)}), width


def run_case(framework: str, path: Path, guarded: bool) -> str:
    """Fork, load in the child under a 3 GiB address-space limit and a 20 s alarm; the outcome."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
            signal.alarm(20)
            code = _child(framework, path, guarded)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "killed"
    return {0: "loaded", 10: "refused"}.get(os.WEXITSTATUS(status), "raised")


def fuzz(cases: int, seed: int, guarded: bool, bases: Path) -> dict[str, Counter[str]]:
    """``cases`` mutants per framework and format; outcome counts, killers kept."""
    # imported once here, not in every child (importing starts no OpenMP thread; training would)
    import lightgbm  # noqa: F401
    import onnxruntime  # noqa: F401
    import xgboost  # noqa: F401

    import modelyard.handlers  # noqa: F401
    from modelyard.handlers import lightgbm_checks, onnx_checks  # noqa: F401

    rng = random.Random(seed)
    crashers = OUT / "crashers"
    crashers.mkdir(parents=True, exist_ok=True)
    documents = {kind: ubj_decode((bases / f"xgboost-{kind}.ubj").read_bytes()) for kind in XGBOOST_KINDS}
    texts = {kind: (bases / f"lightgbm-{kind}.txt").read_text() for kind in LIGHTGBM_KINDS}
    onnx = [p.read_bytes() for p in sorted(bases.glob("onnx-*.onnx"))]
    results: dict[str, Counter[str]] = {}
    with tempfile.TemporaryDirectory() as work:
        for target in ("xgboost JSON", "xgboost UBJSON", "lightgbm text", "onnx protobuf"):
            counts: Counter[str] = Counter()
            for case in range(cases):
                if target.startswith("xgboost"):
                    document = mutate_document(documents[rng.choice(XGBOOST_KINDS)], rng)
                    data = as_json(document) if target == "xgboost JSON" else ubj_encode(document)
                    framework, name = "xgboost", "xgboost-model"
                elif target.startswith("lightgbm"):
                    data = mutate_text(texts[rng.choice(LIGHTGBM_KINDS)], rng).encode()
                    framework, name = "lightgbm", "model.txt"
                else:
                    data, framework, name = mutate_bytes(rng.choice(onnx), rng), "onnx", "model.onnx"
                path = Path(work) / name
                path.write_bytes(data)
                outcome = run_case(framework, path, guarded)
                counts[outcome] += 1
                if outcome == "killed":
                    mode = "guarded" if guarded else "raw"
                    (crashers / f"{mode}-{re.sub(r'[^a-z]+', '-', target)}-{seed}-{case}-{name}").write_bytes(data)
            results[target] = counts
    return results
