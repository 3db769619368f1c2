"""The allocator settings of a feature build's process: a column freed on one thread is reused by
the next one allocated on another, instead of being faulted in again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from gogooku3.allocator import BUILD_ENVIRONMENT, missing_settings

PROBE = """
import json, resource, threading
import numpy as np
n = 40 * 2**20 // 8  # a 40 MB column: above glibc's largest adaptive mmap threshold (32 MiB)
def column():
    np.ones(n)  # allocated, written, freed
for _ in range(2):  # the first ones fault in either way
    worker = threading.Thread(target=column); worker.start(); worker.join()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):  # each on a new thread, as the engine's kernels run on pool threads
    worker = threading.Thread(target=column); worker.start(); worker.join()
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before))
"""


def _faults(extra: dict[str, str]) -> int:
    env = {k: v for k, v in os.environ.items() if k not in BUILD_ENVIRONMENT} | extra
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def test_columns_freed_on_one_thread_are_reused_on_the_next():
    default, configured = _faults({}), _faults(BUILD_ENVIRONMENT)
    # by default each 40 MB column is a fresh mapping whose pages all fault in (105 faults here
    # with 2 MB huge pages, 51,200 with 4 KB pages); configured, the heap's pages are already there
    assert default >= 50
    assert configured < 20


def test_an_explicit_setting_wins():
    environ = {"MALLOC_ARENA_MAX": "4"}
    missing = missing_settings(environ)
    assert "MALLOC_ARENA_MAX" not in missing
    assert missing == {k: v for k, v in BUILD_ENVIRONMENT.items() if k != "MALLOC_ARENA_MAX"}
