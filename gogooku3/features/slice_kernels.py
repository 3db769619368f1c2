"""Compiled cross-section kernels of the CPU engine: z-scores, winsorisation, demeaning and ranks
over each day (or each day's sector).

The cross-section phase runs on rows in day order (:mod:`gogooku3.features.reorder`): each day,
and each (day, sector) group, is one contiguous slice of rows, a run of equal values of the slice
key (``Date``, or the engine's ``_sector_slice``). A kernel takes one slice at a time, so a value
depends on its own slice's rows only, summed in their fixed order: bit-identical whatever other
days the frame holds, which is what the leakage test and "a range equals its sub-ranges" need.

Per slice, over its non-null values: the count, the mean (sum / count), and the sample standard
deviation (ddof=1) from the squared deviations from that mean (a second pass: no cancellation
against the level, and a flat slice gives exactly 0). They replace Polars' ``.over`` windows,
which broadcast each statistic to a full column and combined them in separate passes (a
winsorisation took ~155 ms a column at the bench panel, the kernel ~35 ms; they agree to ~1e-14,
the sums' order being another).

Columns come in as float64 with NaN for null (a NaN value counts as null; the engines' null rule
makes every non-finite value null anyway) and go out the same way.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl

Stat = Literal["z", "winsor", "demean", "rank"]
#: Bits of the rank's radix sort per pass (6 passes over a slice; 8 bits, 8 passes, took 1.15x
#: as long at the bench panel)
RADIX_BITS = 11
RADIX = 1 << RADIX_BITS
STATS: tuple[Stat, ...] = ("z", "winsor", "demean", "rank")


def _kernels() -> Any:
    """The compiled kernel (:mod:`gogooku3.features.kernels.slices`; imported on first use, so
    importing this module stays cheap)."""
    from gogooku3.features.kernels.slices import over_slices

    return over_slices


def slice_values(x: pl.Series, key: pl.Series, stat: Stat, k: float = 0.0) -> pl.Series:
    """``stat`` of ``x`` over the slices of ``key`` (runs of equal values, ascending: ``ValueError``
    naming the row otherwise; see the module docstring); ``k`` is the winsorisation's width in
    standard deviations."""
    if stat not in STATS:
        raise ValueError(f"slice stat {stat!r}: expected one of {', '.join(STATS)}")
    xs = x.cast(pl.Float64).fill_null(np.nan).to_numpy()
    keys = key.to_physical().to_numpy()  # Date as its Int32 days, uncopied; the sector key Int64
    out = np.empty(xs.size)
    unsorted = _kernels()(xs, keys, STATS.index(stat), float(k), out)
    if unsorted >= 0:
        raise ValueError(
            f"cross-section {stat} over {key.name!r}: the rows must be in day order (each slice "
            f"contiguous, keys ascending), but row {unsorted} has {key[unsorted]} after {key[unsorted - 1]}"
        )
    return pl.Series(out, nan_to_null=True)


def slice_expr(x: pl.Expr, key: str, stat: Stat, k: float = 0.0) -> pl.Expr:
    """:func:`slice_values` as an expression over the frame's ``key`` column."""
    return pl.struct(pl.col(key), x.alias("_x")).map_batches(
        lambda s: slice_values(s.struct.field("_x"), s.struct.field(key), stat, k), return_dtype=pl.Float64
    )
