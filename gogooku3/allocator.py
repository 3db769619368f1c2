"""The allocator settings a feature build runs under, as the environment of its process.

The build's compiled kernels (:mod:`gogooku3.features.series_kernels`,
:mod:`gogooku3.features.slice_kernels`, :mod:`gogooku3.features.reorder`) hand Polars one NumPy
array per column: 36 MB of Float64 at the bench panel (4,000 codes x 1,223 days), from glibc's
malloc, on whichever thread runs the kernel. By default glibc serves an allocation that large with a
fresh mapping (its mmap threshold adapts, but never past 32 MiB) and unmaps it when it is freed, and
gives each thread an arena of its own, so the blocks one thread frees are not the next thread's:
every new column faults all its pages in again, zeroed by the kernel. Polars' jemalloc hands its
freed pages back after 10 s.

:data:`BUILD_ENVIRONMENT` keeps them: one glibc arena, blocks below 1 GiB from the heap and kept
there when freed, and jemalloc never returning its dirty pages. Measured at the bench panel,
compute_features over the whole catalogue (median of five, warm): 8.9 s with 4.2 s of system time
(the page faults) by default, 7.7 s with 2.4 s with these settings. Both allocators read them once,
when the process starts, so they are set in the environment the process is started with (the
feature task's container, which ``FeatureBuildOperator`` starts with them; the features
benchmark), never from inside it: set later, glibc's arena limit came too late (the other threads
had arenas already) and did not help. A build is one process: its peak RSS is that of its largest
moment either way, and what it held then stays mapped until it exits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: The allocator settings of a feature build's process (see the module docstring).
BUILD_ENVIRONMENT: dict[str, str] = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
    "MALLOC_TRIM_THRESHOLD_": str((1 << 31) - 1),
    "_RJEM_MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1",
}


def missing_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The :data:`BUILD_ENVIRONMENT` settings ``environ`` lacks (an explicit other value wins)."""
    return {name: value for name, value in BUILD_ENVIRONMENT.items() if name not in environ}
