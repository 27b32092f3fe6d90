"""Load threads get a large stack, and only they do."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from modelyard.executors import LOAD_STACK_SIZE, LoadExecutor


def own_stack_size() -> int:
    """The calling thread's stack size, from glibc."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    attr = ctypes.create_string_buffer(128)  # pthread_attr_t is 56 bytes on x86-64 glibc
    if libc.pthread_getattr_np(ctypes.c_ulong(threading.get_ident()), attr) != 0:
        pytest.skip("pthread_getattr_np is not available")
    size = ctypes.c_size_t()
    libc.pthread_attr_getstacksize(attr, ctypes.byref(size))
    libc.pthread_attr_destroy(attr)
    return size.value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the stack size from glibc")
def test_load_threads_get_the_large_stack_and_other_threads_do_not() -> None:
    with LoadExecutor(2, thread_name_prefix="test-load") as pool:
        sizes = {pool.submit(own_stack_size).result() for _ in range(4)}
    assert sizes == {LOAD_STACK_SIZE}
    assert threading.stack_size() == 0  # the process-wide setting is back
    with ThreadPoolExecutor(1) as other:
        assert other.submit(own_stack_size).result() < LOAD_STACK_SIZE


DEEP_LOAD = """
import sys
from concurrent.futures import ThreadPoolExecutor
import xgboost as xgb
from modelyard.executors import LoadExecutor

def load():
    depth = 100_000  # past what an 8 MiB stack takes (35,170), far below 256 MiB's (1,110,097)
    try:
        xgb.Booster().load_model(bytearray(b'{"learner":' + b"[" * depth + b"]" * depth + b"}"))
    except xgb.core.XGBoostError:
        return "raised"
    return "loaded"

pool = LoadExecutor(1) if sys.argv[1] == "load" else ThreadPoolExecutor(1)
print(pool.submit(load).result())
"""


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["load", "default"])
def test_xgboost_survives_deep_nesting_on_a_load_thread_only(pool: str) -> None:
    # the nesting check is bypassed: this is the defence behind it
    soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    if pool == "default" and not 0 < soft <= 16 << 20:
        pytest.skip("default thread stacks follow the stack limit, which is not glibc's usual 8 MiB here")
    done = subprocess.run([sys.executable, "-c", DEEP_LOAD, pool], capture_output=True, text=True, timeout=120)
    if pool == "load":
        assert (done.returncode, done.stdout.strip()) == (0, "raised"), done.stderr[-500:]
    else:
        assert done.returncode < 0  # killed by a signal: the stack overflowed
