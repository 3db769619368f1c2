"""The allocator setting of a CPU build: a freed column-sized array is reused, not faulted in again."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, resource, sys
import numpy as np
from gogooku3.features.allocator import keep_freed_blocks
kept = keep_freed_blocks() if sys.argv[1] == "keep" else None
n = 40 * 2**20 // 8  # a 40 MB column: above glibc's largest adaptive mmap threshold (32 MiB)
np.ones(n)  # the first one faults in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(n)  # allocated, written, freed
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"kept": kept, "faults": faults}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_freed_columns_are_reused_instead_of_faulted_in_again():
    default, kept = _probe("default"), _probe("keep")
    assert kept["kept"] is True
    # by default each 40 MB array is a fresh mapping whose pages all fault in (105 faults here,
    # with 2 MB huge pages; 51,200 with 4 KB pages); kept, the heap's pages are already there
    assert default["faults"] >= 50
    assert kept["faults"] < 20
