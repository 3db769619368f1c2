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

**How** (:func:`date_order`, compiled with numba). The rows come sorted by (code_id, Date), so a
stable counting sort by (day, sector) bucket, taking the rows in their own order, leaves each
bucket in code_id order: one pass to count, one to place, instead of a comparison sort of 4.5M
keys (0.27 s at the bench panel). A gather into that order reads one row per code and day, each
from another code's slice, so a plain ``take`` misses the cache on every row (~45 ms a column at
the bench panel). :meth:`DayOrder.gather` instead writes the output a block of
2^:data:`TILE_SHIFT` rows at a time (a few days, small enough to stay in cache), taking the block's
rows in their panel order, so the reads run along each code's slice: the same bytes, ~2x faster.
"""

from __future__ import annotations

import datetime as dt
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

#: Sort key of a row without a sector: after every sector of its day (Sector33Code <= 9999).
NO_SECTOR = 99_999
#: ``date_sector`` = day * SECTOR_BASE + Sector33Code (:mod:`gogooku3.features.prepare`).
SECTOR_BASE = 100_000
#: Output rows per block of :meth:`DayOrder.gather`, as a power of two (2^16: ~17 days at 4,000
#: codes, 512 KB of Float64, the cache the block's writes land in; measured best of 2^14, 2^16 and
#: 2^18 at the bench panel).
TILE_SHIFT = 16


def day_sector_key(date: pl.Expr, date_sector: pl.Expr) -> pl.Expr:
    """``date_sector`` with rows without a sector keyed after every sector of their day."""
    return date_sector.fill_null(date.cast(pl.Int64) * SECTOR_BASE + NO_SECTOR)


@dataclass(frozen=True)
class DayOrder:
    """The output rows of a panel in day order (:func:`date_order`) and how to gather into it."""

    rows: np.ndarray  #: int64 panel row of each output row
    #: the same (panel row, output row) pairs, grouped by blocks of 2^TILE_SHIFT output rows and in
    #: panel order within a block: the order :meth:`gather` copies in
    tile_src: np.ndarray
    tile_dst: np.ndarray
    panel_height: int  #: rows of the frame the order was made for (and gathers from)

    @property
    def height(self) -> int:
        return int(self.rows.size)

    def positions(self) -> pl.Series:
        """:attr:`rows` as a Polars series (for ``gather`` and ``take``)."""
        return pl.Series("row", self.rows)

    def gather(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame``'s rows (the panel's, or any frame of its height and row order) in day order.

        Fixed-width columns (numbers, dates) are copied by the tiled kernel, their validity with
        them; other columns (strings, booleans) by Polars' ``gather``. Columns run in parallel on Polars'
        thread count (the kernel releases the GIL)."""
        if frame.width and frame.height != self.panel_height:
            # the kernel does not check its bounds
            raise ValueError(
                f"gather: the frame has {frame.height} rows, the order was made for {self.panel_height}"
            )
        columns = frame.get_columns()
        with ThreadPoolExecutor(max_workers=max(1, min(len(columns), pl.thread_pool_size()))) as pool:
            moved = list(pool.map(self._gather_series, columns))
        return pl.DataFrame(moved)

    def _gather_series(self, s: pl.Series) -> pl.Series:
        import pyarrow as pa

        # Arrow's layout of a number or date: a validity bitmap and one buffer of fixed-width items
        array = s.rechunk().to_arrow()
        if not (pa.types.is_primitive(array.type) and array.type.bit_width in (8, 16, 32, 64)):
            # booleans (bit-packed), strings, nested types; a string's 16-byte view moved by the
            # kernel was no faster than Polars (50 ms a column at the bench panel)
            return s.gather(self.positions())
        width = array.type.bit_width // 8
        kernel = _gather_kernel()
        values = np.frombuffer(array.buffers()[1], dtype=_ITEM[width])[
            array.offset : array.offset + len(array)
        ]
        out = np.empty(self.height, values.dtype)
        kernel(values, self.tile_src, self.tile_dst, out)
        validity = None
        if array.null_count:
            valid = s.is_not_null().to_numpy().view(np.uint8)
            kept = np.empty(self.height, np.uint8)
            kernel(valid, self.tile_src, self.tile_dst, kept)
            validity = pa.py_buffer(np.packbits(kept, bitorder="little"))
        moved = pa.Array.from_buffers(array.type, self.height, [validity, pa.py_buffer(out)])
        return pl.from_arrow(moved).alias(s.name).cast(s.dtype)  # type: ignore[union-attr]


#: The NumPy type the kernel copies items of each width (bytes) as
_ITEM = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def date_order(df: pl.DataFrame, start: dt.date | None) -> DayOrder:
    """The rows of ``df`` dated >= ``start``, in (Date, date_sector, code_id) order (rows without a
    sector last in their day). ``df`` must be sorted by (code_id, Date) with one row per pair, the
    prepared panel's order (``ValueError`` naming the first row out of it otherwise): the counting
    sort relies on it for the code_id order in a bucket, and the CPU engine's series phase on it."""
    n = df.height
    if n >= 2**31:
        raise ValueError(f"date_order: {n} rows is more than the int32 positions hold")
    date = df.get_column("Date").to_physical().to_numpy()
    key = df.select(day_sector_key(pl.col("Date"), pl.col("date_sector"))).to_series().to_numpy()
    code = df.get_column("code_id").to_numpy()
    first = -(2**31) if start is None else (start - dt.date(1970, 1, 1)).days
    rows = np.empty(n, np.int64)
    src = np.empty(n, np.int32)
    dst = np.empty(n, np.int32)
    kept, unsorted, bad_sector = _order_kernel()(
        date, key, code, first, SECTOR_BASE, TILE_SHIFT, rows, src, dst
    )
    if bad_sector >= 0:
        row = df.row(bad_sector, named=True)
        raise ValueError(
            f"date_order: row {bad_sector} (code_id {row['code_id']}, {row['Date']}) has Sector33Code "
            f"{row.get('Sector33Code')!r}, outside the 0..{SECTOR_BASE - 1} a day's sector key holds"
        )
    if unsorted >= 0:
        was, now = df.row(unsorted - 1, named=True), df.row(unsorted, named=True)
        raise ValueError(
            "feature panel must be sorted by (code_id, Date) with unique rows (prepare_panel's order): "
            f"row {unsorted} has (code_id {now['code_id']}, {now['Date']}) after "
            f"(code_id {was['code_id']}, {was['Date']})"
        )
    return DayOrder(rows[:kept], src[:kept], dst[:kept], n)


@functools.cache
def _order_kernel() -> Any:
    """The compiled counting sort (numba, compiled on first use: importing stays cheap)."""
    from gogooku3.features.compiled import kernel

    @kernel()
    def order(date, key, code, first, base, shift, rows, src, dst):  # noqa: ANN001, ANN202
        n = key.size
        for j in range(1, n):
            if code[j] < code[j - 1] or (code[j] == code[j - 1] and date[j] <= date[j - 1]):
                return 0, j, -1
        # buckets: (day - first kept day) * sectors + the sector's rank among the sectors present;
        # ``bucket`` is -1 for a row not kept
        lo_day, hi_day = 2**31, -(2**31)
        rank = np.zeros(base, np.int64)
        for j in range(n):
            if date[j] >= first:
                lo_day = min(lo_day, date[j])
                hi_day = max(hi_day, date[j])
                sector = key[j] - date[j] * base
                if sector < 0 or sector >= base:
                    return 0, -1, j
                rank[sector] = 1
        sectors = 0
        for s in range(base):
            if rank[s]:
                rank[s] = sectors
                sectors += 1
        if sectors == 0:
            return 0, -1, -1
        bucket = np.empty(n, np.int64)
        counts = np.zeros((hi_day - lo_day + 1) * sectors + 1, np.int64)
        for j in range(n):
            if date[j] >= first:
                b = (date[j] - lo_day) * sectors + rank[key[j] - date[j] * base]
                bucket[j] = b
                counts[b + 1] += 1
            else:
                bucket[j] = -1
        for b in range(counts.size - 1):
            counts[b + 1] += counts[b]
        kept = counts[counts.size - 1]
        # each row's output row (rows in panel order, so each bucket stays in code_id order);
        # ``bucket`` now holds it
        for j in range(n):
            b = bucket[j]
            if b >= 0:
                bucket[j] = counts[b]
                counts[b] += 1
        # the same pairs by block of output rows, in panel order within a block
        blocks = ((kept - 1) >> shift) + 1 if kept else 0
        starts = np.zeros(blocks + 1, np.int64)
        for j in range(n):
            if bucket[j] >= 0:
                starts[(bucket[j] >> shift) + 1] += 1
        for b in range(blocks):
            starts[b + 1] += starts[b]
        for j in range(n):
            if bucket[j] >= 0:
                b = bucket[j] >> shift  # a shift: a division per row cost ~40 ms
                src[starts[b]] = j
                dst[starts[b]] = bucket[j]
                starts[b] += 1
        # and the panel row of each output row, written a block at a time (a write per row in
        # panel order would miss the cache on every row)
        for k in range(kept):
            rows[dst[k]] = src[k]
        return kept, -1, -1

    return order


@functools.cache
def _gather_kernel() -> Any:
    """``out[dst[k]] = values[src[k]]`` for every pair, in the pairs' (tiled) order."""
    from gogooku3.features.compiled import kernel

    @kernel()
    def gather(values, src, dst, out):  # noqa: ANN001, ANN202
        for k in range(src.size):
            out[dst[k]] = values[src[k]]

    return gather
