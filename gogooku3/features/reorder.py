"""The one reorder of the feature build: (Code, Date) rows -> the output rows in day order.

Per-code series need each code's history contiguous; cross-sections, the targets' per-day
statistics and the per-day lake partitions need each day contiguous. The build reorders once,
between the two, and keeps only the rows it outputs (dated >= ``start``), so everything after the
reorder works on those rows alone. (The CPU engine gathers each column into this order as soon as
its series are done: :func:`gogooku3.features.engine_cpu.compute_series_in_day_order`.)

The output order is **(Date, Sector33Code, Code)** (rows without a sector last within their day):
each day and each (day, sector) group is then one contiguous slice, which makes the per-day and
per-sector statistics slice aggregations - fast, and summed in a fixed order, so their float
results are bit-identical whatever other days the frame holds. (A hash group-by over the whole
frame would merge partial sums in an order that depends on threading.) The lake sorts each
partition by (Date, Code) when it writes it.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

#: Sort key of a row without a sector: after every sector of its day (Sector33Code <= 9999).
NO_SECTOR = 99_999


def day_sector_key(date: pl.Expr, date_sector: pl.Expr) -> pl.Expr:
    """``date_sector`` with rows without a sector keyed after every sector of their day."""
    return date_sector.fill_null(date.cast(pl.Int64) * 100_000 + NO_SECTOR)


def date_order(df: pl.DataFrame, start: dt.date | None) -> pl.Series:
    """Row positions of ``df`` dated >= ``start``, in (Date, date_sector, code_id) order (nulls last).

    One UInt64 key (day-sector key in the high 32 bits, code_id in the low 32) sorts several
    times faster than three sort columns.
    """
    key = (
        day_sector_key(pl.col("Date"), pl.col("date_sector")).cast(pl.UInt64) * (1 << 32)
        + pl.col("code_id").cast(pl.UInt64)
    ).alias("_key")
    index = df.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_i"), "Date", key)
    if start is not None:
        index = index.filter(pl.col("Date") >= start)
    return index.sort("_key").get_column("_i")
