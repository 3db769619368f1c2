"""Measuring a benchmark step: wall time, CPU time and the process's peak resident memory.

Peak memory is the resident set size sampled in a thread (every 10 ms by default) while the step
runs, read from Linux's ``/proc/self/statm``: tracemalloc misses Polars' and Arrow's native
allocations, and ``ru_maxrss`` stays flat once an earlier step has peaked higher.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident set size in bytes."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * _PAGE


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float
    start_rss: int
    peak_rss: int
    #: kernel share of ``cpu_s`` (mostly first-touch page faults of fresh memory)
    sys_s: float = 0.0

    @property
    def rss_growth(self) -> int:
        return self.peak_rss - self.start_rss


def measure(fn: Callable[[], T], *, every_s: float = 0.01) -> tuple[T, Measurement]:
    """Run ``fn`` and return its result with the time and memory it took."""
    stop = threading.Event()
    start = rss_bytes()
    peak = [start]

    def sample() -> None:
        while not stop.wait(every_s):
            peak[0] = max(peak[0], rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0, c0, s0 = time.perf_counter(), time.process_time(), os.times().system
    try:
        out: Any = fn()
    finally:
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        system = os.times().system - s0
        stop.set()
        sampler.join()
    return out, Measurement(wall, cpu, start, max(peak[0], rss_bytes()), system)
