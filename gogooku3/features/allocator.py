"""The allocator setting of a process that builds features on the CPU.

The build's compiled kernels (:mod:`gogooku3.features.series_kernels`,
:mod:`gogooku3.features.reorder`) hand Polars one NumPy array per column: 36 MB of Float64 at the
bench panel (4,000 codes x 1,223 days). glibc serves an allocation above its mmap threshold (which
adapts, but never past 32 MiB on 64-bit) with a fresh mapping and unmaps it when it is freed, so
every such array faults all its pages in again, zeroed by the kernel: ~6 ms per column at the bench
panel, and two threads allocating at once took as long as one after the other. Polars' own
allocator (jemalloc) keeps its freed pages; NumPy's did not.

:func:`keep_freed_blocks` raises the mmap threshold to 1 GiB and the trim threshold to 2 GiB, so a
freed column stays in the heap for the next one (measured at the bench panel: the 13-feature subset
1.9-2.0 s against 2.3-2.5 s). The process's peak RSS is that of its largest moment as before; the
heap it held at that moment is kept until the process ends (a build is one process: the task's
container, the CLI, a bench run). Call it where a process starts a CPU build; it is a no-op (False)
where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: allocations below it come from the heap, and stay there when freed
MMAP_THRESHOLD = 1 << 30
#: free memory at the heap's top beyond this is returned to the kernel (mallopt takes an int)
TRIM_THRESHOLD = (1 << 31) - 1


@functools.cache
def keep_freed_blocks() -> bool:
    """Let freed column-sized blocks stay in the process heap (see the module docstring); True
    where glibc took both settings."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only
    except (OSError, AttributeError):
        log.info("allocator: not glibc, its defaults are kept")
        return False
    gnu_get_libc_version.restype = ctypes.c_char_p
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug(
        "allocator: glibc %s keeps freed blocks below %d bytes: %s",
        gnu_get_libc_version().decode(),
        MMAP_THRESHOLD,
        ok,
    )
    return ok
