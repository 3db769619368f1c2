"""How the feature build compiles its kernels, and the on-disk cache that spares a task the compiling.

The CPU engine's kernels (:mod:`~gogooku3.features.series_kernels`,
:mod:`~gogooku3.features.slice_kernels`, :mod:`~gogooku3.features.reorder`, the peer table's top-k in
:mod:`~gogooku3.features.peers`) are compiled by numba on first use: a resumed daily run at 4,000
codes took 8.7 s in a fresh process compiling them, 2.6 s loading them from the cache, 1.7 s once
loaded. :func:`kernel` compiles with numba's cache, which keeps the machine code next to the
module's source (``__pycache__``) or, where that is not writable, in ``NUMBA_CACHE_DIR`` (the task
images set it to a directory any uid can write), keyed by the source file and the CPU; a changed
module or another CPU compiles again. The task images run :func:`warm_kernels` when they are
built, so a task starts with every kernel compiled: ``python -m gogooku3.features.compiled``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any


def kernel(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` as the build's kernels use it: released GIL (the engines run kernels on
    several threads) and the on-disk cache; ``options`` adds numba's own (``fastmath``...)."""
    import numba

    return numba.njit(nogil=True, cache=True, **options)


def warm_kernels() -> float:
    """Compile (or load from the cache) every kernel a CPU build uses, each specialisation a build
    reaches: a whole-history build with checkpoints, then a daily run resumed from them, over a
    small synthetic market. Returns the seconds it took."""
    from gogooku3.features.build import build_features
    from gogooku3.features.checkpoint import CHECKPOINT_COLUMNS, LOOKBACK_ROWS, Resume
    from gogooku3.features.testing import market_inputs

    started = time.perf_counter()
    inputs = market_inputs(24, dt.date(2024, 1, 1), dt.date(2024, 6, 28), seed=1)
    days = inputs.daily_quotes.get_column("Date").unique().sort()
    built = build_features(inputs.daily_quotes, **inputs.kwargs(), states=True)
    first, last = days[-1 - LOOKBACK_ROWS], days[-1]
    state, check = (
        built.filter(built["Date"] == day).select("Date", "Code", *CHECKPOINT_COLUMNS)
        for day in (first, days[-2])
    )
    quotes = inputs.daily_quotes.filter(inputs.daily_quotes["Date"] >= first)
    build_features(quotes, **inputs.kwargs(), start=last, end=last, resume=Resume(state, check))
    return time.perf_counter() - started


if __name__ == "__main__":
    print(f"feature kernels compiled and cached in {warm_kernels():.1f} s")
