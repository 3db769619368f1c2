"""Fetching a window of trades_spec publications into ``raw/trades_spec`` (the weekly DAG's first step).

Publication schedule
--------------------
J-Quants publishes a week's investor-type trading values after the close on the Thursday of the
following week; when that Thursday is not a JPX trading day the publication moves to the next
trading day (:func:`gogooku3.calendar.publication_day_for`). Revisions (since 2023-04) arrive as extra records with
a newer ``PublishedDate``, normally on a later publication day but nothing guarantees that, so a
run fetches *every* calendar day of its window, not only the publication day.

Window
------
The run for publication day ``P`` fetches the calendar days ``[W, P]`` with
``W = min(P - 6, previous_publication_day(P) + 1)``: at least the 7 calendar days ending on P, and
always back to the day after the previous scheduled publication (a holiday-shifted schedule can
leave more than 7 days between two publications). Consecutive runs' windows therefore cover
every calendar day; overlaps are re-fetched and rewritten identically.

One ranged request (``from=W&to=P``, all pages) returns the window; :func:`split_by_published`
splits it by ``PublishedDate`` into one frame per calendar day of the window, and every day gets a
partition ``raw/trades_spec/date=<day>/``, empty when nothing was published that day, so "fetched,
nothing published" is distinguishable from "never fetched".

Affected range
--------------
Interim day D uses exactly the records published before D (:func:`gogooku3.flows.usable_date`),
so the only days whose rows can change after fetching ``[W, P]`` are those from
``usable_date(W)`` on: :attr:`FetchedWindow.affected_start`. That is never after the earliest
usable date of any fetched record, and it also covers a record that disappeared from the source
(its day's partition is now rewritten empty).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from gogooku3.calendar import next_trading_day, previous_publication_day
from gogooku3.flows.expand import usable_date
from gogooku3.jquants.datasets import TRADES_SPEC

if TYPE_CHECKING:
    from gogooku3.config import Settings
    from gogooku3.jquants.client import JQuantsClient
    from gogooku3.lake import Lake, Manifest

DATASET = "trades_spec"
#: Minimum number of calendar days a weekly run fetches (ending on its publication day).
MIN_WINDOW_DAYS = 7


class TradesSpecWindowError(ValueError):
    """The answer for a window holds records that do not belong to it (or lack a PublishedDate)."""


# ------------------------------------------------------------------------------ pure schedule


def fetch_window(day: dt.date) -> tuple[dt.date, dt.date]:
    """The calendar days ``(W, day)`` the run for ``day`` fetches (see the module docstring)."""
    start = min(
        day - dt.timedelta(days=MIN_WINDOW_DAYS - 1), previous_publication_day(day) + dt.timedelta(days=1)
    )
    return start, day


# ------------------------------------------------------------------------------ pure split


def split_by_published(frame: pl.DataFrame, start: dt.date, end: dt.date) -> dict[dt.date, pl.DataFrame]:
    """One frame per calendar day of [start, end] (empty, with the frame's schema, on a day
    without records), holding the records whose ``PublishedDate`` is that day.

    Raises :class:`TradesSpecWindowError` naming the dates when a record has no PublishedDate or
    one outside the window: the server answered something other than what was asked.
    """
    if start > end:
        raise ValueError(f"trades_spec window: start {start} is after end {end}")
    if "PublishedDate" not in frame.columns:
        raise TradesSpecWindowError("trades_spec answer has no PublishedDate column")
    published = pl.col("PublishedDate")
    outside = frame.filter(published.is_null() | (published < start) | (published > end))
    if outside.height:
        shown = outside.get_column("PublishedDate").unique().sort(nulls_last=True).head(3).to_list()
        raise TradesSpecWindowError(
            f"trades_spec from={start} to={end}: {outside.height} record(s) with PublishedDate "
            f"{', '.join('null' if d is None else d.isoformat() for d in shown)} outside the window"
        )
    key = list(TRADES_SPEC.key)
    dupes = frame.filter(frame.select(key).is_duplicated())
    if dupes.height:
        sample = dupes.select(key).unique(maintain_order=True).head(2).rows()
        raise TradesSpecWindowError(
            f"trades_spec from={start} to={end}: {dupes.height} records share a key {key}, e.g. {sample}"
        )
    by_day = frame.partition_by("PublishedDate", as_dict=True, maintain_order=True) if frame.height else {}
    n_days = (end - start).days + 1
    days = [start + dt.timedelta(days=i) for i in range(n_days)]
    return {d: by_day.get((d,), frame.clear()) for d in days}


# ------------------------------------------------------------------------------ shell


@dataclass(frozen=True)
class FetchedWindow:
    """What one window fetch wrote. ``rows_by_day`` has every calendar day of the window."""

    start: dt.date
    end: dt.date
    rows_by_day: dict[dt.date, int]
    requests: int
    pages: int

    @property
    def rows(self) -> int:
        return sum(self.rows_by_day.values())

    @property
    def earliest_usable(self) -> dt.date | None:
        """The earliest usable date of any fetched record (None when nothing was published)."""
        published = [d for d, n in self.rows_by_day.items() if n]
        return usable_date(min(published)) if published else None

    @property
    def affected_start(self) -> dt.date:
        """The first trading day whose interim row can differ after this fetch: ``usable_date(start)``."""
        return next_trading_day(self.start)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary (Airflow XCom)."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "rows": self.rows,
            "rows_by_day": {d.isoformat(): n for d, n in self.rows_by_day.items()},
            "earliest_usable": self.earliest_usable.isoformat() if self.earliest_usable else None,
            "affected_start": self.affected_start.isoformat(),
            "requests": self.requests,
            "pages": self.pages,
        }


def write_window(lake: Lake, frames: dict[dt.date, pl.DataFrame], *, source: str) -> list[Manifest]:
    """Write one ``raw/trades_spec`` partition per day of ``frames`` (atomic, idempotent)."""
    return [
        lake.write_partition(
            "raw", DATASET, day, frame, source=source, sort_by=TRADES_SPEC.key, date_column="PublishedDate"
        )
        for day, frame in sorted(frames.items())
    ]


async def fetch_window_to_lake(
    settings: Settings,
    start: dt.date,
    end: dt.date,
    lake: Lake,
    *,
    client: JQuantsClient | None = None,
) -> FetchedWindow:
    """Fetch trades_spec published in [start, end] with one ranged request and write a partition
    for every calendar day of the window. Nothing is written unless the whole answer validated."""
    import asyncio

    from gogooku3.jquants.client import JQuantsClient, Query

    query = Query(DATASET, from_=start, to=end)
    if client is None:
        async with JQuantsClient(settings.jquants) as own:
            outcome = await own.fetch_query(query)
    else:
        outcome = await client.fetch_query(query)
    frames = split_by_published(outcome.frame, start, end)
    source = f"jquants-{settings.jquants.api_version}"
    await asyncio.to_thread(write_window, lake, frames, source=source)
    return FetchedWindow(
        start=start,
        end=end,
        rows_by_day={d: f.height for d, f in frames.items()},
        requests=outcome.requests,
        pages=outcome.pages,
    )


def fetch_window_to_lake_sync(
    settings: Settings, start: dt.date, end: dt.date, *, lake_uri: str | None = None
) -> FetchedWindow:
    """Blocking wrapper (Airflow tasks, scripts): opens the lake and runs :func:`fetch_window_to_lake`."""
    import asyncio

    from gogooku3.exchange_calendar import open_lake_following_exchange

    lake = open_lake_following_exchange(lake_uri or settings.lake_uri, settings.s3)
    return asyncio.run(fetch_window_to_lake(settings, start, end, lake))
