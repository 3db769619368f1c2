"""The build's kernels come from numba's on-disk cache once compiled: a second process compiles
nothing (what the task images rely on, having run warm_kernels when they were built)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json
from gogooku3.features import peers, reorder, series_kernels, slice_kernels
from gogooku3.features.compiled import warm_kernels
warm_kernels()
kernels = {
    **{f"series.{k}": v for k, v in series_kernels._kernels().items()},
    "slice": slice_kernels._kernels(),
    "order": reorder._order_kernel(),
    "gather": reorder._gather_kernel(),
    "top_k": peers._top_k_kernel(),
}
print(json.dumps({
    name: {"hits": sum(k.stats.cache_hits.values()), "misses": sum(k.stats.cache_misses.values())}
    for name, k in kernels.items()
}))
"""


def _run(cache_dir: str) -> dict:
    env = os.environ | {"NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_every_kernel_from_the_cache(tmp_path):
    first = _run(str(tmp_path))
    # (a kernel two threads reach at once may be compiled by one and loaded by the other)
    assert all(s["misses"] > 0 for s in first.values()), first
    second = _run(str(tmp_path))
    assert all(s["misses"] == 0 and s["hits"] > 0 for s in second.values()), second
