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

What the raw layer must cover (:func:`check_raw_coverage`, before anything is written): no
partition whose data file lacks its manifest (a fetch that stopped before committing: its records
would silently be missing), and no day to expand after :func:`provisional_through` of the last
fetched day: rows beyond it would carry the last week forward for weeks (``days_since_published``
49) as if nothing had been published since.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import polars as pl

from gogooku3.calendar import is_trading_day, next_publication_day, trading_days
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


def provisional_through(fetched_through: dt.date) -> dt.date:
    """The last trading day an expansion may write once ``raw/trades_spec`` holds every day through
    ``fetched_through`` (F): final through :func:`last_determined_day` (F), provisional after that
    through the next scheduled publication day. Provisional rows assume nothing is published
    between F and their day, which holds on the regular schedule; the next weekly run, whose window
    starts right after F, rewrites them."""
    return max(last_determined_day(fetched_through), next_publication_day(fetched_through))


class TradesSpecCoverageError(ValueError):
    """``raw/trades_spec`` does not cover what an expansion needs; the message names the days."""


def check_raw_coverage(lake: Lake, start: dt.date, end: dt.date) -> None:
    """Raise :class:`TradesSpecCoverageError` unless the raw layer covers an expansion of
    ``[start, end]`` (see the module docstring)."""
    raw_uri = lake.uri_for(RAW_LAYER, RAW_DATASET)
    orphaned = [d for d in lake.orphaned_partitions(RAW_LAYER, RAW_DATASET) if d < end]
    if orphaned:
        days = ", ".join(d.isoformat() for d in orphaned)
        raise TradesSpecCoverageError(
            f"trades_spec expand: {raw_uri} has data without a manifest on {days} (a fetch stopped "
            f"before committing); fetch those days again (gogooku3 fetch --date {orphaned[0]} "
            "--endpoint trades_spec --force)"
        )
    fetched = lake.list_partitions(RAW_LAYER, RAW_DATASET)
    if not fetched:
        return  # expand_to_lake names an empty raw layer itself
    last = fetched[-1]
    limit = provisional_through(last)
    beyond = [d for d in trading_days(start, end) if d > limit]
    if beyond:
        raise TradesSpecCoverageError(
            f"trades_spec expand: {beyond[-1]} is beyond what {raw_uri} covers: fetched through {last}, "
            f"final through {last_determined_day(last)}, provisional through {limit} (the next "
            f"publication day); fetch the publications after {last} first"
        )


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

    Returns the manifests written, in date order (empty when the range has no trading day). Raises
    :class:`TradesSpecCoverageError` (nothing written) when the raw layer does not cover the range.
    """
    if start > end:
        raise ValueError(f"trades_spec expand: start {start} is after end {end}")
    days = trading_days(start, end)
    if not days:
        log.info("trades_spec expand: no trading day in %s..%s, nothing to write", start, end)
        return []
    check_raw_coverage(lake, start, end)
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
