"""The imperative shell around the expansion: raw/trades_spec -> interim/trades_spec_daily.

Reads every committed ``raw/trades_spec`` partition (partitioned by PublishedDate) dated before
``end`` (nothing published on or after ``end`` is usable on a day <= ``end``; reading all of them
is the lookback the 52-week z-scores need, and trades_spec is ~10 records a week), expands them
with :func:`gogooku3.flows.expand.expand_trades_spec` and writes one
``interim/trades_spec_daily/date=YYYY-MM-DD/`` partition per JPX trading day in [start, end].

Idempotent: each partition is a pure function of the raw partitions and the day, written sorted
by (Date, Section), so a rerun writes byte-identical data (the lake replaces partitions
atomically). A trading day on which no Section has a usable week yet gets an empty partition
with the full schema, so downstream readers can require every trading day.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from gogooku3.calendar import is_trading_day, trading_days
from gogooku3.flows.expand import FlowHistory, expand_trades_spec
from gogooku3.jquants.datasets import TRADES_SPEC
from gogooku3.redaction import library_logger

if TYPE_CHECKING:  # the lake is only needed for types here; callers pass one in
    from gogooku3.lake import Lake, Manifest

log = library_logger(__name__)

RAW_LAYER, RAW_DATASET = "raw", "trades_spec"
OUT_LAYER, OUT_DATASET = "interim", "trades_spec_daily"
SOURCE = "gogooku3.flows.expand_trades_spec(raw/trades_spec)"


def last_determined_day(fetched_through: dt.date) -> dt.date:
    """The last trading day whose daily row is final once every record published on or before
    ``fetched_through`` is in the lake.

    Day D uses exactly the records with PublishedDate < D, so D is final when every day before D
    has been fetched: D <= fetched_through + 1. (A weekly run after publication day P may write up
    to ``last_determined_day(P)``, which is ``next_trading_day(P)`` when P is followed by a trading
    day; days after that can still receive a publication.)
    """
    day = fetched_through + dt.timedelta(days=1)
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def read_raw_trades_spec(lake: Lake, end: dt.date) -> pl.DataFrame:
    """All raw trades_spec records published before ``end`` (canonical schema; empty allowed)."""
    published = [d for d in lake.list_partitions(RAW_LAYER, RAW_DATASET) if d < end]
    if not published:
        return pl.DataFrame(schema=TRADES_SPEC.schema)
    return lake.read_range(RAW_LAYER, RAW_DATASET, published[0], published[-1])


def expand_to_lake(
    lake: Lake,
    start: dt.date,
    end: dt.date,
    *,
    history: FlowHistory | None = None,
) -> list[Manifest]:
    """Expand raw trades_spec into one interim partition per trading day in [start, end].

    Returns the manifests written, in date order (empty when the range has no trading day).
    """
    if start > end:
        raise ValueError(f"trades_spec expand: start {start} is after end {end}")
    days = trading_days(start, end)
    if not days:
        log.info("trades_spec expand: no trading day in %s..%s, nothing to write", start, end)
        return []
    raw = read_raw_trades_spec(lake, end)
    if raw.height == 0:
        # Writing empty days here would pass an unfetched lake off as "no usable week yet".
        raise ValueError(
            f"trades_spec expand: {lake.uri_for(RAW_LAYER, RAW_DATASET)} has no records published before "
            f"{end}; fetch them first (gogooku3 fetch --date YYYY-MM-DD --endpoint trades_spec)"
        )
    daily = expand_trades_spec(raw, start, end, history=history)
    by_day = daily.partition_by("Date", as_dict=True, maintain_order=True) if daily.height else {}
    manifests = []
    for day in days:
        part = by_day.get((day,), daily.clear())
        manifests.append(
            lake.write_partition(
                OUT_LAYER,
                OUT_DATASET,
                day,
                part,
                source=SOURCE,
                sort_by=("Date", "Section"),
                date_column="Date",
            )
        )
    log.info(
        "trades_spec expand: %d raw records -> %d partitions %s..%s (%d rows)",
        raw.height,
        len(manifests),
        days[0],
        days[-1],
        daily.height,
    )
    return manifests
